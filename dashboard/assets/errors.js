// Errors are kept for the browser test (and visible from the devtools console).
window.__sluiceErrors = [];
window.addEventListener("error", (e) => window.__sluiceErrors.push(String(e.message || e)));
window.addEventListener("unhandledrejection", (e) => window.__sluiceErrors.push(String(e.reason)));
(function () {
  const original = console.error;
  console.error = function (...args) { window.__sluiceErrors.push(args.map(String).join(" ")); original.apply(console, args); };
})();
