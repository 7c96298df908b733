// Progressive comfort only: every page works without this file.
(function () {
  "use strict";

  // Ask before a button that writes (data-confirm) submits its form.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-confirm]");
    if (button && !window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
    }
  });

  // In what-if and calculator forms, mark the fields that differ from what the page was loaded with
  // and say how many there are (announced politely to screen readers).
  function trackChanges(form) {
    var counter = form.querySelector(".changed-count");
    function update() {
      var changed = 0;
      form.querySelectorAll("input[data-initial], select[data-initial], textarea[data-initial]").forEach(function (el) {
        var differs = el.value !== el.getAttribute("data-initial");
        el.classList.toggle("changed", differs);
        if (differs) { changed += 1; }
      });
      form.querySelectorAll(".checks[data-initial]").forEach(function (box) {
        var initial = box.getAttribute("data-initial");
        var now = Array.prototype.map.call(box.querySelectorAll("input:checked"), function (c) { return c.value; }).join(",");
        var differs = now !== initial;
        box.classList.toggle("changed", differs);
        if (differs) { changed += 1; }
      });
      if (counter) {
        counter.hidden = changed === 0;
        counter.textContent = changed ? "已改动 " + changed + " 项（尚未保存）" : "";
      }
    }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
  }
  document.querySelectorAll("form[data-track-changes]").forEach(trackChanges);

  // Bring the answer or the errors into view and focus after a form post.
  var target = document.querySelector(".error-summary, #whatif-result, #result");
  if (target) {
    target.focus();
  }
})();
