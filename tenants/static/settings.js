// The organisation's settings page: name, retention, contract end, default language,
// country (PATCH /api/v1/orgs/{slug}) and the logo (PUT/DELETE …/logo, raw image bytes).
import { t, formatNumber } from '/static/i18n.js';
import { $, api, ApiError, badLine, fieldError, intlLocale, main, problemText, say } from '/static/admin.js';

const errorBox = $('settings-error');
const noticeBox = $('settings-notice');
const form = $('settings-form');
const fields = {
  name: [$('org-name'), $('org-name-error')],
  retention_days: [$('retention'), $('retention-error')],
  contract_end: [$('contract-end'), $('contract-error')],
  country: [$('country'), $('country-error')],
};
const retentionHint = $('retention-hint');
const deletionLine = $('contract-deletion');
const betweenText = t('Between 1 and 90 days.');

function retentionText(days) {
  if (days === 1) return retentionHint.dataset.one;
  return retentionHint.dataset.many.replace('%(days)s', formatNumber(days));
}

function showRetention() {
  const days = Number($('retention').value);
  if (Number.isInteger(days) && days >= 1 && days <= 90) {
    retentionHint.textContent = `${retentionText(days)} ${betweenText}`;
  }
}

// The day everything goes: 90 days after the contract's end (P18).
function showDeletion() {
  const value = $('contract-end').value;
  if (!value) {
    deletionLine.textContent = '';
    return;
  }
  const day = new Date(`${value}T00:00:00Z`);
  day.setUTCDate(day.getUTCDate() + 90);
  // As the server writes dates: "28 September 2027".
  const date = new Intl.DateTimeFormat(intlLocale, { dateStyle: 'long', timeZone: 'UTC' }).format(day);
  deletionLine.textContent = $('contract-end').dataset.deletion.replace('%(date)s', date);
}

$('retention').addEventListener('input', showRetention);
$('contract-end').addEventListener('input', showDeletion);
$('contract-end').addEventListener('change', showDeletion);

// Every problem of the form at once, each next to its field.
function check() {
  const problems = {};
  const name = $('org-name').value.trim();
  if (name.length < 2 || name.length > 200 || badLine(name)) {
    problems.name = t("Enter the organisation's name: 2 to 200 characters, without < or >.");
  }
  const raw = $('retention').value.trim();
  const days = Number(raw);
  if (!/^[0-9]+$/.test(raw) || days < 1 || days > 90) {
    problems.retention_days = t('Enter a whole number of days from 1 to 90.');
  }
  const end = $('contract-end');
  if (end.validity && end.validity.badInput) {
    problems.contract_end = t('Enter a complete date, or leave the field empty.');
  }
  return problems;
}

function mark(problems) {
  let first = null;
  for (const [key, [input, line]] of Object.entries(fields)) {
    fieldError(input, line, problems[key] || '');
    if (problems[key] && !first) first = input;
  }
  return first;
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say(errorBox, noticeBox);
  const first = mark(check());
  if (first) {
    say(errorBox, noticeBox, { error: t('Some of what you entered was not accepted. Check the marked fields.') });
    first.focus();
    return;
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const saved = await api('/', {
      method: 'PATCH',
      json: {
        name: $('org-name').value.trim(),
        retention_days: Number($('retention').value),
        contract_end: $('contract-end').value || null,
        locale: $('locale').value,
        country: $('country').value,
      },
    });
    $('org-name').value = saved.name;
    for (const shown of document.querySelectorAll('.org-name')) shown.textContent = saved.name;
    showRetention();
    showDeletion();
    say(errorBox, noticeBox, { notice: t('The settings are saved.') });
  } catch (error) {
    const refused = error instanceof ApiError && error.status === 400 ? error.fields() : new Set();
    const problems = {};
    for (const key of refused) {
      if (key in fields) problems[key] = key === 'country' ? t('Choose a country from the list.') : t('This value was not accepted.');
    }
    if (error instanceof ApiError && error.status === 400 && /country/.test(error.message)) {
      problems.country = t('Choose a country from the list.');
    }
    const firstBad = mark(problems);
    say(errorBox, noticeBox, { error: problemText(error) });
    if (firstBad) firstBad.focus();
  } finally {
    button.disabled = false;
  }
});

// --- the logo --------------------------------------------------------------------------------

const logoForm = $('logo-form');
const fileInput = $('logo-file');
const logoError = $('logo-error');
const preview = $('logo-preview');
const noLogo = $('logo-none');
const removeButton = $('logo-remove');
const maxBytes = Number(main.dataset.logoMax);

function logoProblem(error) {
  if (!(error instanceof ApiError)) return problemText(error);
  if (error.status === 413 || error.code === 'too_large') return t('The image is larger than 1 MB. Choose a smaller file.');
  if (error.code === 'svg_refused') {
    return t('SVG images are not accepted because they can contain scripts. Choose a PNG, JPEG or WebP file.');
  }
  if (error.code === 'not_an_image') return t('This file is not an image. Choose a PNG, JPEG or WebP file.');
  if (error.code === 'image_dimensions') return t('The image is too large in pixels (at most 4096 × 4096). Choose a smaller one.');
  if (error.code === 'empty') return t('This file is empty. Choose a PNG, JPEG or WebP file.');
  return problemText(error);
}

function showLogo(url) {
  if (url) {
    preview.src = url;
    preview.hidden = false;
    noLogo.hidden = true;
    removeButton.hidden = false;
  } else {
    preview.removeAttribute('src');
    preview.hidden = true;
    noLogo.hidden = false;
    removeButton.hidden = true;
  }
}

logoForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  say(errorBox, noticeBox);
  const file = fileInput.files && fileInput.files[0];
  if (!file) {
    fieldError(fileInput, logoError, t('Choose an image file first.'));
    fileInput.focus();
    return;
  }
  if (file.size > maxBytes) {
    // Not sent at all: the region would refuse it, and the person waits for nothing.
    fieldError(fileInput, logoError, t('The image is larger than 1 MB. Choose a smaller file.'));
    fileInput.focus();
    return;
  }
  fieldError(fileInput, logoError, '');
  const button = logoForm.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const saved = await api('/logo', { method: 'PUT', raw: file });
    showLogo(`${saved.url}?v=${saved.sha256.slice(0, 12)}`);
    fileInput.value = '';
    say(errorBox, noticeBox, { notice: t('The logo is saved. Your visitors see it from now on.') });
  } catch (error) {
    fieldError(fileInput, logoError, logoProblem(error));
    fileInput.focus();
  } finally {
    button.disabled = false;
  }
});

fileInput.addEventListener('change', () => fieldError(fileInput, logoError, ''));

removeButton.addEventListener('click', async () => {
  say(errorBox, noticeBox);
  if (!window.confirm(t("Remove the logo? Your visitors then see your organisation's name alone."))) return;
  try {
    await api('/logo', { method: 'DELETE' });
    showLogo(null);
    say(errorBox, noticeBox, { notice: t('The logo is removed.') });
    fileInput.focus();
  } catch (error) {
    say(errorBox, noticeBox, { error: problemText(error) });
  }
});
