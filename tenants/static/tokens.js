// The integrations page: API tokens with what each may do, when it was made and last
// used; create one with scopes (its value is shown once, here, and never again), revoke
// one with a confirmation. Through the tenant API (…/tokens).
import { t } from '/static/i18n.js';
import { $, api, ApiError, badLine, copy, dateTimeText, el, fieldError, problemText, say } from '/static/admin.js';

const errorBox = $('tokens-error');
const noticeBox = $('tokens-notice');
const list = $('tokens');
const empty = $('tokens-empty');
const form = $('token-form');
const created = $('token-created');
const tokenField = $('new-token');

// The scopes in words, as the page rendered them in its language.
const words = {};
for (const span of $('scope-words').content.querySelectorAll('[data-scope]')) words[span.dataset.scope] = span.textContent;

let tokens = [];

function tokenItem(token) {
  const facts = [
    el('li', {}, t('Created %(when)s', { when: dateTimeText(token.created_at) })),
    el('li', {}, token.last_used_at ? t('Last used %(when)s', { when: dateTimeText(token.last_used_at) }) : t('Not used yet')),
  ];
  const head = el('h3', {}, token.label);
  if (token.revoked) head.append(' ', el('span', { className: 'badge' }, t('Revoked')));
  const item = el(
    'li',
    { className: token.revoked ? 'token revoked' : 'token', dataset: { id: token.id } },
    head,
    el('p', { className: 'small muted may' }, t('What it may do')),
    el('ul', { className: 'scopes small' }, ...token.scopes.map((scope) => el('li', {}, words[scope] || scope))),
    el('ul', { className: 'facts-inline muted small' }, ...facts),
  );
  if (!token.revoked) {
    const revoke = el('button', { type: 'button', className: 'danger' }, t('Revoke…'));
    revoke.addEventListener('click', () => revokeToken(token));
    item.append(el('div', { className: 'controls' }, revoke));
  }
  return item;
}

function render() {
  // Working tokens first, newest first within each.
  const shown = [...tokens].sort((a, b) => (a.revoked - b.revoked) || b.created_at.localeCompare(a.created_at));
  list.replaceChildren(...shown.map(tokenItem));
  list.removeAttribute('aria-busy');
  empty.hidden = shown.length > 0;
}

async function load() {
  try {
    tokens = await api('/tokens');
    render();
  } catch (error) {
    list.removeAttribute('aria-busy');
    say(errorBox, noticeBox, { error: problemText(error) });
  }
}

async function revokeToken(token) {
  say(errorBox, noticeBox);
  const question = t('Revoke the token %(label)s? The system that uses it is refused from now on. This cannot be undone.', { label: token.label });
  if (!window.confirm(question)) return;
  try {
    await api(`/tokens/${token.id}`, { method: 'DELETE' });
    token.revoked = true;
    render();
    say(errorBox, noticeBox, { notice: t('The token %(label)s is revoked.', { label: token.label }) });
    $('token-list-title').focus();
  } catch (error) {
    say(errorBox, noticeBox, { error: problemText(error) });
  }
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say(errorBox, noticeBox);
  const labelInput = $('token-label');
  const label = labelInput.value.trim();
  const scopes = [...form.querySelectorAll('input[name="scopes"]:checked')].map((box) => box.value);
  const firstBox = form.querySelector('input[name="scopes"]');
  const labelProblem = !label || label.length > 80 || badLine(label) ? t('Enter a name of 1 to 80 characters, without < or >.') : '';
  const scopeProblem = scopes.length ? '' : t('Choose at least one thing the token may do.');
  fieldError(labelInput, $('token-label-error'), labelProblem);
  fieldError(firstBox, $('token-scopes-error'), scopeProblem);
  if (labelProblem || scopeProblem) {
    (labelProblem ? labelInput : firstBox).focus();
    return;
  }
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const made = await api('/tokens', { method: 'POST', json: { label, scopes } });
    tokenField.value = made.token;
    created.hidden = false;
    $('created-title').focus();
    form.reset();
    tokens = await api('/tokens');
    render();
  } catch (error) {
    if (error instanceof ApiError && error.status === 403 && error.code !== 'csrf') {
      fieldError(firstBox, $('token-scopes-error'), t('You cannot give a token more than your own role may do.'));
    }
    say(errorBox, noticeBox, { error: problemText(error) });
  } finally {
    button.disabled = false;
  }
});

$('copy-token').addEventListener('click', async () => {
  const done = await copy(tokenField.value, tokenField);
  say(errorBox, noticeBox, { notice: done ? t('The token is copied.') : t('Press Ctrl+C (or ⌘+C) to copy the selected token.') });
});

// Once copied, the value leaves the page for good: it is not kept anywhere.
$('token-done').addEventListener('click', () => {
  tokenField.value = '';
  created.hidden = true;
  say(errorBox, noticeBox, { notice: t('The token is no longer shown. It is in the list below.') });
  $('token-list-title').focus();
});

load();
