// mixtrain dashboard: the little behaviour htmx does not cover. Keep the live log scrolled to its end
// while the reader is at the end (scrolling up to read stops the following).
(function () {
  function follow(log, force) {
    if (force || log.dataset.follow !== "no") log.scrollTop = log.scrollHeight;
  }
  document.addEventListener("DOMContentLoaded", function () {
    var log = document.getElementById("log");
    if (!log) return;
    follow(log, true);
    log.addEventListener("scroll", function () {
      log.dataset.follow = log.scrollTop + log.clientHeight >= log.scrollHeight - 8 ? "yes" : "no";
    });
    document.body.addEventListener("htmx:oobAfterSwap", function () { follow(log, false); });
  });
})();
