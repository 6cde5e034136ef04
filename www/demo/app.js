// Trackly: a small project tracker that embeds onramp exactly as a customer would.
// Its own state lives in localStorage; onramp only observes and is told who the user is.
// There are no track() calls: the plan (pkg-config/plans/trackly.json, served by the collector)
// names the clicks, submits and routes that matter, and onramp captures them itself.
(function () {
  var $ = function (id) { return document.getElementById(id); };
  var KEY = "trackly.state";
  var state = JSON.parse(localStorage.getItem(KEY) || "null") || { user: null, projects: [], team: [], files: [] };
  function save() { localStorage.setItem(KEY, JSON.stringify(state)); }

  function list(id, items) {
    var ul = $(id);
    ul.textContent = "";
    items.forEach(function (text) {
      var li = document.createElement("li");
      li.textContent = text;
      ul.appendChild(li);
    });
  }

  function render() {
    var signedIn = !!state.user;
    $("signup").hidden = signedIn;
    $("app").hidden = !signedIn;
    $("log-out").hidden = !signedIn;
    $("whoami").textContent = signedIn ? state.user.name : "";
    list("projects", state.projects);
    list("team", state.team);
    list("files", state.files);
    $("projects-empty").hidden = state.projects.length > 0;
    var route = (location.hash.replace(/^#\//, "") || "projects").split("/")[0];
    // Any other fragment (an onramp preview link's, say) shows the default page.
    if (!document.querySelector('[data-page="' + route + '"]')) route = "projects";
    document.querySelectorAll("[data-page]").forEach(function (page) {
      page.hidden = page.dataset.page !== route;
    });
    document.querySelectorAll("[data-route]").forEach(function (a) {
      a.classList.toggle("active", a.dataset.route === route);
    });
  }

  $("signup-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var email = $("signup-email").value.trim().toLowerCase();
    state = { user: { id: email, name: $("signup-name").value.trim(), signedUpAt: Date.now() }, projects: [], team: [], files: [] };
    save();
    onramp.identify(state.user.id, { signedUpAt: state.user.signedUpAt, name: state.user.name, plan: "trial" });
    location.hash = "#/projects";
    render();
  });

  $("new-project").addEventListener("click", function () { $("project-form").hidden = false; $("project-name").focus(); });
  $("project-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var name = $("project-name").value.trim();
    state.projects.push(name);
    save();
    $("project-form").hidden = true;
    $("project-name").value = "";
    render();
  });

  $("invite-teammate").addEventListener("click", function () { $("invite-form").hidden = false; $("invite-email").focus(); });
  $("invite-form").addEventListener("submit", function (e) {
    e.preventDefault();
    state.team.push($("invite-email").value.trim());
    save();
    $("invite-form").hidden = true;
    $("invite-email").value = "";
    render();
  });

  $("upload-file").addEventListener("click", function () {
    var name = "brief-" + (state.files.length + 1) + ".pdf";
    state.files.push(name);
    save();
    render();
  });

  $("log-out").addEventListener("click", function () {
    onramp.reset();
    state = { user: null, projects: [], team: [], files: [] };
    save();
    render();
  });

  window.addEventListener("hashchange", render);
  if (state.user) onramp.identify(state.user.id, { signedUpAt: state.user.signedUpAt });
  render();
})();
