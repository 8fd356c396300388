import { Link } from "./Link";

/** The page shown for an unknown address, or a list or job that does not exist (or was deleted). */
export function NotFound({ title, text, back }: { title: string; text: string; back: { to: string; label: string } }) {
  return (
    <div className="page" data-testid="not-found">
      <h1>{title}</h1>
      <p>{text}</p>
      <Link to={back.to}>{back.label}</Link>
    </div>
  );
}
