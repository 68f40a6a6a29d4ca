// Loaded first: every uncaught error, rejected promise, console.error or
// blocked resource is shown on the page in #page-errors (and counted in its
// data-count), so neither a reader nor a test can miss one.
"use strict";
(function () {
  function report(message) {
    var show = function () {
      var list = document.getElementById("page-errors");
      if (!list) return;
      var item = document.createElement("li");
      item.textContent = String(message);
      list.appendChild(item);
      list.dataset.count = String(list.children.length);
    };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", show);
    else show();
  }
  window.addEventListener("error", function (event) {
    if (event.target && event.target !== window) report("failed to load " + (event.target.src || event.target.href));
    else report("error: " + event.message + " (" + event.filename + ":" + event.lineno + ")");
  }, true);
  window.addEventListener("unhandledrejection", function (event) {
    report("unhandled rejection: " + (event.reason && event.reason.stack || event.reason));
  });
  document.addEventListener("securitypolicyviolation", function (event) {
    report("blocked by the content security policy: " + event.blockedURI + " (" + event.violatedDirective + ")");
  });
  var consoleError = console.error;
  console.error = function () {
    report("console.error: " + Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
})();
