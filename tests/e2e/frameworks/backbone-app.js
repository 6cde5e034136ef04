// A small Backbone app in the style of Backbone's TodoMVC, built by esbuild in
// frameworks.test.mjs: views re-render themselves from underscore templates with
// `this.$el.html(...)` on every model change, so each change throws their nodes away and makes
// new ones; routing by Backbone.Router on the URL's hash.
import Backbone from "backbone";
import _ from "underscore";
import $ from "jquery";

Backbone.$ = $;
const ROW = 32;
const ROWS = 1000;
const VISIBLE = 8;

const state = new Backbone.Model({ query: "", projects: null, loading: false, top: 0, page: "home" });

const SearchFooter = Backbone.View.extend({
  tagName: "div",
  template: _.template(`<button data-onramp="save-search" class="<%- query.length % 2 ? 'odd' : 'even' %>">Save search<%- query ? ' “' + query + '”' : '' %></button>`),
  initialize() { this.listenTo(state, "change:query", this.render); },
  render() { this.$el.html(this.template(state.toJSON())); return this; },
});

const ProjectsView = Backbone.View.extend({
  tagName: "section",
  attributes: { "aria-label": "Projects" },
  events: { "click [data-onramp=load-projects]": "load" },
  template: _.template(`
    <button data-onramp="load-projects" aria-busy="<%- loading %>"><%- loading ? 'Loading…' : 'Load projects' %></button>
    <% if (projects) { %><ul><% _.each(projects, function (p) { %><li><%- p %></li><% }) %></ul><button data-onramp="new-project">New project</button><% } %>`),
  initialize() { this.listenTo(state, "change:projects change:loading", this.render); },
  load() {
    window.onramp.track("projects_requested");
    state.set({ loading: true });
    fetch("/fw/api/projects").then((r) => r.json()).then((p) => state.set({ projects: p, loading: false }));
  },
  render() {
    // Keep the keyboard where it was across the re-render, as TodoMVC apps do for their input.
    const had = this.el.contains(document.activeElement) && document.activeElement.dataset.onramp;
    this.$el.html(this.template(state.toJSON()));
    if (had) this.$(`[data-onramp=${had}]`).trigger("focus");
    return this;
  },
});

const RowsView = Backbone.View.extend({
  className: "rows",
  attributes: { "data-onramp": "rows", tabindex: "0", "aria-label": "Tasks" },
  template: _.template(`<div style="height:<%- height %>px;position:relative"><% _.each(rows, function (n) { %><div data-row="<%- n %>" class="row" style="top:<%- n * ROW %>px">Task <%- n %> <button data-onramp="star" aria-label="Star task <%- n %>">★</button></div><% }) %></div>`),
  events: { scroll: "onScroll" },
  onScroll() { state.set({ top: this.el.scrollTop }); },
  initialize() { this.listenTo(state, "change:top", this.render); },
  render() {
    const first = Math.max(0, Math.floor(state.get("top") / ROW) - 2);
    const last = Math.min(ROWS, first + VISIBLE + 4);
    const top = this.el.scrollTop;
    this.$el.html(this.template({ height: ROWS * ROW, rows: _.range(first, last), ROW }));
    this.el.scrollTop = top;
    return this;
  },
});

const PageView = Backbone.View.extend({
  tagName: "main",
  events: { "input [data-onramp=search]": "onInput" },
  onInput(e) { state.set({ query: e.target.value }); },
  initialize() { this.listenTo(state, "change:page", this.render); this.children = []; },
  render() {
    _.invoke(this.children, "remove");
    this.children = [];
    const page = state.get("page");
    this.$el.empty();
    if (page === "home") {
      this.$el.append(`<h1>Home</h1><section aria-label="Search"><label>Search projects <input data-onramp="search"></label></section>`);
      const footer = new SearchFooter().render();
      this.$("section").append(footer.el);
      const projects = new ProjectsView().render();
      const rows = new RowsView().render();
      this.$el.append(projects.el, rows.el);
      this.children.push(footer, projects, rows);
    } else if (page === "settings") {
      this.$el.append(`<h1>Settings</h1><p>Nothing to set yet.</p>`);
    } else {
      this.$el.append(`<h1>Reports</h1><p>No reports yet.</p>`);
    }
    if (page !== "reports") this.$el.append(_.template(`<footer><a data-onramp="help" href="#help-<%- page %>">Help with <%- page %></a></footer>`)({ page }));
    return this;
  },
});

const Router = Backbone.Router.extend({
  routes: { "": "home", settings: "settings", reports: "reports" },
  home() { state.set({ page: "home" }); },
  settings() { state.set({ page: "settings" }); },
  reports() { state.set({ page: "reports" }); },
});

$("#app").html(`<nav><a href="#">Home</a> <a href="#settings">Settings</a> <a href="#reports">Reports</a></nav>`).append(new PageView().render().el);
const router = new Router();
Backbone.history.start();
// The tests change the route as the app's own code would, without moving focus.
window.app = { navigate: (to) => router.navigate(to === "/" ? "" : to.slice(1), { trigger: true }), ready: true };
