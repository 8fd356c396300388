/**
 * No file-level import loop in web/src: every relative import (type-only ones included)
 * is followed, and a cycle fails the test with its path.
 */
import { describe, expect, it } from "vitest";

// Every source file's text, keyed "../src/<path>" (vite reads them at test time).
const SOURCES = import.meta.glob<string>("../src/**/*.{ts,tsx}", { query: "?raw", import: "default", eager: true });
const IMPORT = /^\s*(?:import|export)\b[^"']*?\bfrom\s+["'](\.[^"']+)["']/gm;

/** `spec` imported from `from`, as a key of SOURCES, or null (not a source file). */
function resolveImport(from: string, spec: string): string | null {
  const parts = from.split("/").slice(0, -1);
  for (const part of spec.split("/")) {
    if (part === "..") parts.pop();
    else if (part !== ".") parts.push(part);
  }
  const base = parts.join("/");
  for (const candidate of [base, `${base}.ts`, `${base}.tsx`, `${base}/index.ts`]) {
    if (candidate in SOURCES) return candidate;
  }
  return null;
}

/** The first cycle found, as a list of files (first == last), or null. */
function findCycle(graph: Map<string, string[]>): string[] | null {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (node: string): string[] | null => {
    state.set(node, "open");
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === "open") return [...stack.slice(stack.indexOf(next)), next];
      if (!state.has(next)) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(node, "done");
    return null;
  };
  for (const node of graph.keys()) {
    if (!state.has(node)) {
      const found = visit(node);
      if (found) return found;
    }
  }
  return null;
}

function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, text] of Object.entries(SOURCES)) {
    const targets = [...text.matchAll(IMPORT)].map((m) => resolveImport(file, m[1]));
    graph.set(file, targets.filter((t): t is string => t !== null));
  }
  return graph;
}

describe("web/src import graph", () => {
  it("reads the imports of every module", () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(20);
    expect(graph.get("../src/progress/connection.ts")).toContain("../src/progress/history.ts");
    // a multi-line import
    expect(graph.get("../src/progress/connection.ts")).toContain("../src/progress/protocol.ts");
    expect(graph.get("../src/types.ts")).toContain("../src/generated/openapi.ts");
  });

  it("finds a loop when there is one", () => {
    const graph = new Map([
      ["a", ["b"]],
      ["b", ["c"]],
      ["c", ["a"]],
    ]);
    expect(findCycle(graph)).toEqual(["a", "b", "c", "a"]);
  });

  it("has no file-level loop", () => {
    const cycle = findCycle(importGraph());
    expect(cycle?.join(" -> ") ?? null).toBeNull();
  });
});
