// The members page (tenants/templates/members.html) works with plain forms; this adds:
// the auditor's "access until" field only where the auditor role is chosen, the end of
// that day in the member's own time zone, a confirmation before removing a member or
// revoking an invitation, and focus on what the page says after a change.
import { t } from "/static/i18n.js";

const main = document.querySelector("main");

// The date field of an auditor's access follows its role select.
for (const box of main.querySelectorAll(".access-end[data-for]")) {
  const select = document.getElementById(box.dataset.for);
  if (!select) continue;
  const follow = () => {
    const auditor = select.value === "auditor";
    box.hidden = !auditor;
    for (const input of box.querySelectorAll("input")) input.required = auditor;
  };
  select.addEventListener("change", follow);
  follow();
}

// A stored end shown as the member's own local day (the server renders it in UTC).
for (const input of main.querySelectorAll("input[type=date][data-ends]")) {
  const end = new Date(input.dataset.ends);
  if (!Number.isNaN(end.getTime())) {
    const pad = (n) => String(n).padStart(2, "0");
    input.value = `${end.getFullYear()}-${pad(end.getMonth() + 1)}-${pad(end.getDate())}`;
  }
}

// The chosen day ends at 23:59 where the member is: send the time zone's offset on that day.
for (const form of main.querySelectorAll("form")) {
  const offset = form.querySelector("input[name=tz_offset]");
  const day = form.querySelector("input[name=access_until]");
  if (!offset) continue;
  form.addEventListener("submit", () => {
    const when = day && day.value ? new Date(`${day.value}T23:59`) : new Date();
    offset.value = String(Number.isNaN(when.getTime()) ? new Date().getTimezoneOffset() : when.getTimezoneOffset());
  });
}

for (const form of main.querySelectorAll("form.remove-form")) {
  form.addEventListener("submit", (event) => {
    const question = t("Remove %(name)s from the organisation? Their sessions end at once.", { name: form.dataset.name });
    if (!window.confirm(question)) event.preventDefault();
  });
}

for (const form of main.querySelectorAll("form.revoke-form")) {
  form.addEventListener("submit", (event) => {
    const question = t("Revoke the invitation of %(email)s? Its link stops working.", { email: form.dataset.email });
    if (!window.confirm(question)) event.preventDefault();
  });
}

// After a change, what the page says gets the focus (screen readers read it first).
const said = document.getElementById("error-summary") || document.getElementById("page-error")
  || document.getElementById("page-warning") || document.getElementById("page-notice");
if (said) {
  said.tabIndex = -1;
  said.focus();
}
