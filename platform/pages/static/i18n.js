// The page's language for scripts: translations of the messages scripts show come with
// the page (a JSON data block rendered by the server, no extra request), t("…") looks
// them up. Placeholders are %(name)s, as in the server's catalogs.
const block = document.getElementById("konsil-strings");
const strings = block ? JSON.parse(block.textContent || "{}") : {};

export const locale = document.documentElement.lang || "en";
// The same regional conventions as the server's dates (platform/pages/i18n.py babel_locale):
// English pages write 24-hour times and day-month dates.
const intlLocale = { en: "en-GB", nb: "nb-NO", de: "de-DE", nl: "nl-NL" }[locale] || "en-GB";

export function t(message, params) {
  let text = Object.prototype.hasOwnProperty.call(strings, message) ? strings[message] : message;
  if (params) {
    text = text.replace(/%\((\w+)\)s/g, (whole, key) => (key in params ? String(params[key]) : whole));
  }
  return text;
}

export function formatTime(value, options) {
  return new Intl.DateTimeFormat(intlLocale, options || { hour: "2-digit", minute: "2-digit" }).format(value);
}

export function formatDateTime(value, options) {
  return new Intl.DateTimeFormat(intlLocale, options || { dateStyle: "medium", timeStyle: "short" }).format(value);
}

export function formatNumber(value, options) {
  return new Intl.NumberFormat(intlLocale, options).format(value);
}
