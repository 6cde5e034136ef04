// A small React 19 app with client-side routing (react-router, history pushState), built by
// esbuild in frameworks.test.mjs. Written the way product code is: state in components, keys
// that make React replace nodes, data fetched after mount, a windowed list. Targets carry
// stable `data-onramp` attributes, as docs/TIPS.md recommends.
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { BrowserRouter, Link, Route, Routes, useNavigate } from "react-router";

const ROW = 32;
const ROWS = 1000;
const VISIBLE = 8;

function Search() {
  const [query, setQuery] = useState("");
  return (
    <section aria-label="Search">
      <label>
        Search projects{" "}
        <input data-onramp="search" value={query} onChange={(e) => setQuery(e.target.value)} />
      </label>
      {/* The key changes on every keystroke: React throws the button away and makes a new one. */}
      <button key={query} data-onramp="save-search" className={query.length % 2 ? "odd" : "even"}>
        Save search{query ? ` “${query}”` : ""}
      </button>
    </section>
  );
}

function VirtualRows() {
  const [top, setTop] = useState(0);
  const first = Math.max(0, Math.floor(top / ROW) - 2);
  const last = Math.min(ROWS, first + VISIBLE + 4);
  const rows = [];
  for (let n = first; n < last; n++) {
    rows.push(
      <div key={n} data-row={n} className="row" style={{ top: n * ROW }}>
        Task {n} <button data-onramp="star" aria-label={`Star task ${n}`}>★</button>
      </div>,
    );
  }
  return (
    <div data-onramp="rows" className="rows" tabIndex={0} aria-label="Tasks" onScroll={(e) => setTop(e.currentTarget.scrollTop)}>
      <div style={{ height: ROWS * ROW, position: "relative" }}>{rows}</div>
    </div>
  );
}

function Projects() {
  const [state, setState] = useState("idle");
  const [projects, setProjects] = useState([]);
  const load = () => {
    setState("loading");
    window.onramp.track("projects_requested");
    fetch("/fw/api/projects").then((r) => r.json()).then((p) => { setProjects(p); setState("done"); });
  };
  return (
    <section aria-label="Projects">
      <button data-onramp="load-projects" onClick={load} aria-busy={state === "loading"}>
        {state === "loading" ? "Loading…" : "Load projects"}
      </button>
      {state === "done" && (
        <>
          <ul>{projects.map((p) => <li key={p}>{p}</li>)}</ul>
          <button data-onramp="new-project">New project</button>
        </>
      )}
    </section>
  );
}

function Help({ page }) {
  return <footer><a data-onramp="help" href={`#help-${page}`}>Help with {page}</a></footer>;
}

function Home() {
  return (<main><h1>Home</h1><Search /><Projects /><VirtualRows /><Help page="home" /></main>);
}

function Settings() {
  return (<main><h1>Settings</h1><p>Nothing to set yet.</p><Help page="settings" /></main>);
}

function Reports() {
  return (<main><h1>Reports</h1><p>No reports yet.</p></main>);
}

function App() {
  const navigate = useNavigate();
  // The tests change the route as the app's own code would (a shortcut, a redirect), without
  // moving focus.
  useEffect(() => { window.app = { navigate, ready: true }; }, [navigate]);
  return (
    <>
      <nav>
        <Link to="/">Home</Link> <Link to="/settings">Settings</Link> <Link to="/reports">Reports</Link>
      </nav>
      <Routes>
        <Route path="/" element={<Home />} />
        <Route path="/settings" element={<Settings />} />
        <Route path="/reports" element={<Reports />} />
      </Routes>
    </>
  );
}

createRoot(document.getElementById("app")).render(
  <StrictMode><BrowserRouter basename="/fw/react"><App /></BrowserRouter></StrictMode>,
);
