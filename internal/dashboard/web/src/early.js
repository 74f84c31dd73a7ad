// Loaded first in <head>, before the styles: records Content-Security-
// Policy violations (a blocked style or script means part of the page did
// not load) so the console can show them once it runs.
window.__vigilCSP = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const v = `${e.violatedDirective} ${e.blockedURI || "inline"}`;
  window.__vigilCSP.push(v);
  window.dispatchEvent(new CustomEvent("vigil:csp", { detail: v }));
});
