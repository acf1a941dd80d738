// Sign-in and sign-up pages: the tenant ID follows the organisation name
// until edited; a throttled sign-in counts down.
"use strict";
(function () {
  function suggestSlug(name) {
    return name.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 32).replace(/-+$/, "");
  }
  document.addEventListener("DOMContentLoaded", function () {
    var name = document.getElementById("name");
    var slug = document.getElementById("slug");
    var preview = document.getElementById("slug-preview");
    if (name && slug) {
      var edited = slug.value !== "" && slug.value !== suggestSlug(name.value);
      var show = function () { preview.textContent = (slug.value || "your-id") + preview.textContent.slice(preview.textContent.indexOf(".")); };
      name.addEventListener("input", function () {
        if (!edited) { slug.value = suggestSlug(name.value); show(); }
      });
      slug.addEventListener("input", function () {
        edited = slug.value !== "";
        slug.value = slug.value.toLowerCase();
        show();
      });
    }
    var submit = document.getElementById("login-submit");
    if (submit && submit.dataset.retryAfter) {
      var left = parseInt(submit.dataset.retryAfter, 10);
      var label = submit.textContent;
      submit.disabled = true;
      var tick = function () {
        if (left <= 0) { submit.disabled = false; submit.textContent = label; return; }
        submit.textContent = "Try again in " + left + " s";
        left--;
        setTimeout(tick, 1000);
      };
      tick();
    }
  });
})();
