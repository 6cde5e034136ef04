// A small Vue 3 app with vue-router (history pushState), built by esbuild in
// frameworks.test.mjs with Vue's template compiler. The windowed list keys its rows by their
// slot in the window, so Vue patches a row node in place into another task while scrolling:
// the node that was task 7 becomes task 8 (a target that stays in the page but stops
// matching its selector).
import { createApp, ref, computed } from "vue";
import { createRouter, createWebHistory } from "vue-router";

const ROW = 32;
const ROWS = 1000;
const VISIBLE = 8;

const Search = {
  setup() { return { query: ref("") }; },
  template: `
    <section aria-label="Search">
      <label>Search projects <input data-onramp="search" v-model="query"></label>
      <button :key="query" data-onramp="save-search" :class="query.length % 2 ? 'odd' : 'even'">Save search{{ query ? ' “' + query + '”' : '' }}</button>
    </section>`,
};

const VirtualRows = {
  setup() {
    const top = ref(0);
    const rows = computed(() => {
      const first = Math.max(0, Math.floor(top.value / ROW) - 2);
      const last = Math.min(ROWS, first + VISIBLE + 4);
      return Array.from({ length: last - first }, (_, k) => first + k);
    });
    return { top, rows, ROW, ROWS };
  },
  template: `
    <div data-onramp="rows" class="rows" tabindex="0" aria-label="Tasks" @scroll="top = $event.target.scrollTop">
      <div :style="{ height: ROWS * ROW + 'px', position: 'relative' }">
        <div v-for="(n, slot) in rows" :key="slot" :data-row="n" class="row" :style="{ top: n * ROW + 'px' }">
          Task {{ n }} <button data-onramp="star" :aria-label="'Star task ' + n">★</button>
        </div>
      </div>
    </div>`,
};

const Projects = {
  setup() {
    const state = ref("idle");
    const projects = ref([]);
    const load = () => {
      state.value = "loading";
      window.onramp.track("projects_requested");
      fetch("/fw/api/projects").then((r) => r.json()).then((p) => { projects.value = p; state.value = "done"; });
    };
    return { state, projects, load };
  },
  template: `
    <section aria-label="Projects">
      <button data-onramp="load-projects" @click="load" :aria-busy="state === 'loading'">{{ state === 'loading' ? 'Loading…' : 'Load projects' }}</button>
      <template v-if="state === 'done'">
        <ul><li v-for="p in projects" :key="p">{{ p }}</li></ul>
        <button data-onramp="new-project">New project</button>
      </template>
    </section>`,
};

const Help = { props: ["page"], template: `<footer><a data-onramp="help" :href="'#help-' + page">Help with {{ page }}</a></footer>` };

const Home = { components: { Search, Projects, VirtualRows, Help }, template: `<main><h1>Home</h1><Search /><Projects /><VirtualRows /><Help page="home" /></main>` };
const Settings = { components: { Help }, template: `<main><h1>Settings</h1><p>Nothing to set yet.</p><Help page="settings" /></main>` };
const Reports = { template: `<main><h1>Reports</h1><p>No reports yet.</p></main>` };

const router = createRouter({
  history: createWebHistory("/fw/vue/"),
  routes: [{ path: "/", component: Home }, { path: "/settings", component: Settings }, { path: "/reports", component: Reports }],
});

const App = {
  template: `
    <nav><RouterLink to="/">Home</RouterLink> <RouterLink to="/settings">Settings</RouterLink> <RouterLink to="/reports">Reports</RouterLink></nav>
    <RouterView />`,
};

createApp(App).use(router).mount("#app");
// The tests change the route as the app's own code would, without moving focus.
router.isReady().then(() => { window.app = { navigate: (to) => router.push(to), ready: true }; });
