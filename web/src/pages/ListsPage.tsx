import { useCallback, useEffect, useState, type FormEvent } from "react";

import { api } from "../api";
import { Link } from "../components/Link";
import { formatDateTime } from "../format";
import { navigate } from "../router";
import type { VideoList } from "../types";

export function ListsPage() {
  const [lists, setLists] = useState<VideoList[] | null>(null);
  const [name, setName] = useState("");
  const [error, setError] = useState<string | null>(null);

  const load = useCallback(() => {
    api.lists().then(setLists, (e: Error) => setError(e.message));
  }, []);
  useEffect(load, [load]);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    setError(null);
    try {
      const created = await api.createList(name);
      setName("");
      navigate(`/lists/${created.id}`);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  const remove = async (list: VideoList) => {
    if (!window.confirm(`Delete the list "${list.name}" and its videos?`)) return;
    try {
      await api.deleteList(list.id);
      load();
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  return (
    <div className="page">
      <h1>Video lists</h1>
      <form className="inline-form" onSubmit={(e) => void create(e)} aria-label="Create a list">
        <input placeholder="New list name" aria-label="List name" value={name} onChange={(e) => setName(e.target.value)} required />
        <button type="submit">Create list</button>
      </form>
      {error && (
        <p className="error-text" role="alert">
          {error}
        </p>
      )}
      {lists === null ? (
        <p className="muted">Loading...</p>
      ) : lists.length === 0 ? (
        <p className="muted">No lists yet.</p>
      ) : (
        <table className="lists" data-testid="lists-table">
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Videos</th>
              <th scope="col">Created</th>
              <th scope="col" />
            </tr>
          </thead>
          <tbody>
            {lists.map((l) => (
              <tr key={l.id}>
                <td>
                  <Link to={`/lists/${l.id}`}>{l.name}</Link>
                </td>
                <td>{l.video_count ?? 0}</td>
                <td>{formatDateTime(l.created_at)}</td>
                <td>
                  <button type="button" className="small danger" onClick={() => void remove(l)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
