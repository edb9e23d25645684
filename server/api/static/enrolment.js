// The member page while an enrolment by tap waits: asks the server every second and a
// half where it stands, and opens the page again once a tap filled it (or it expired),
// so the new badge shows without a click. Without JavaScript, the page's refresh link
// does the same.
(function () {
  "use strict";
  var box = document.getElementById("enrolment");
  if (!box) { return; }
  var poll = box.getAttribute("data-poll");
  function check() {
    fetch(poll, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (answer) { return answer.ok ? answer.json() : { state: "pending" }; })
      .then(function (body) {
        if (body.state === "done") {
          window.location.assign(box.getAttribute("data-done"));
        } else if (body.state === "expired") {
          window.location.assign(box.getAttribute("data-expired"));
        } else {
          window.setTimeout(check, 1500);
        }
      })
      .catch(function () { window.setTimeout(check, 3000); });
  }
  window.setTimeout(check, 1500);
}());
