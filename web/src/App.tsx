export function App() {
  return <main>reeltrack</main>;
}
