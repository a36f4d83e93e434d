// Tables too wide for the screen (a phone's 390 px) scroll sideways inside their .scroll box. Without
// a cue nobody finds the hidden columns, so while a box overflows it gets .overflows (CSS fades its
// right edge) and a "scroll →" hint above it; at the right end the fade goes (.at-end). Boxes that fit
// show nothing. Rows added live can change the width, so a ResizeObserver re-checks.
(function () {
  "use strict";
  function hintFor(box) {
    let hint = box.previousElementSibling;
    if (!hint || !hint.classList.contains("scroll-hint")) {
      hint = document.createElement("p");
      hint.className = "scroll-hint";
      hint.setAttribute("aria-hidden", "true");  // the box's own aria-label says it scrolls
      hint.textContent = "scroll →";
      box.before(hint);
    }
    return hint;
  }
  function update(box) {
    const overflows = box.scrollWidth - box.clientWidth > 1;
    box.classList.toggle("overflows", overflows);
    box.classList.toggle("at-end", overflows && box.scrollLeft + box.clientWidth >= box.scrollWidth - 2);
    hintFor(box).hidden = !overflows;
  }
  const boxes = Array.from(document.querySelectorAll(".scroll"));
  const observer = window.ResizeObserver ? new ResizeObserver((entries) => entries.forEach((e) => update(e.target))) : null;
  boxes.forEach((box) => {
    update(box);
    box.addEventListener("scroll", () => update(box), { passive: true });
    if (observer) {
      observer.observe(box);
      if (box.firstElementChild) observer.observe(box.firstElementChild);
    }
  });
  if (!observer) window.addEventListener("resize", () => boxes.forEach(update));
})();
