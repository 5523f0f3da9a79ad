// The signup form (platform/control/templates/signup.html) works without this script;
// it only suggests the web address from the name, as the server would, until the
// person types one of their own, and offers the countries of the region chosen.
const form = document.querySelector("form.signup");

function suggest(name) {
  const map = { "æ": "ae", "ø": "o", "å": "a", "ß": "ss", "œ": "oe", "ð": "d", "þ": "th", "ł": "l" };
  let text = name.toLowerCase().replace(/[æøåßœðþł]/g, (c) => map[c]);
  text = text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "");
  text = text.replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 40).replace(/-+$/, "");
  return text.length >= 3 ? text : "";
}

if (form) {
  const name = form.querySelector("#name");
  const slug = form.querySelector("#slug");
  const country = form.querySelector("#country");
  let typed = slug.value !== "" && slug.value !== suggest(name.value);

  name.addEventListener("input", () => {
    if (!typed) slug.value = suggest(name.value);
  });
  slug.addEventListener("input", () => {
    typed = slug.value !== "";
  });

  function offerCountries() {
    const chosen = form.querySelector('input[name="region"]:checked');
    const region = chosen ? chosen.value : "";
    const groups = country.querySelectorAll("optgroup");
    let current = null;
    for (const group of groups) {
      const mine = !region || group.dataset.region === region;
      group.hidden = !mine;
      group.disabled = !mine;
      if (mine && region) current = group;
    }
    const selected = country.selectedOptions[0];
    if (selected && selected.parentElement.tagName === "OPTGROUP" && selected.parentElement.disabled) {
      country.value = "";
    }
    // A region with one country (the United States) needs no choosing.
    if (current && current.children.length === 1) country.value = current.children[0].value;
    country.disabled = Boolean(region) && !current;
  }
  for (const radio of form.querySelectorAll('input[name="region"]')) {
    radio.addEventListener("change", offerCountries);
  }
  offerCountries();
}
