// The rooms page: every room with its link (copy), create, rename, welcome text, check-in
// steps (a national eID check, a card fee), give to another expert (owners and admins),
// delete with a confirmation. Experts see and change
// their own rooms. Everything goes through the tenant API (…/rooms, …/members).
import { t } from '/static/i18n.js';
import { $, api, ApiError, badLine, badText, copy, el, fieldError, intlLocale, main, problemText, say } from '/static/admin.js';

const errorBox = $('rooms-error');
const noticeBox = $('rooms-notice');
const list = $('rooms');
const empty = $('rooms-empty');
const form = $('room-form');
const manager = main.dataset.manager === 'yes';
const me = main.dataset.member;
const welcomeMax = Number(main.dataset.welcomeMax);
// Without a payment provider in the region no room can ask a fee (a room that has one keeps it, and may drop it).
const cardFees = main.dataset.cardFees === 'yes';
const SLUG = /^[a-z0-9](?:[a-z0-9-]{1,58}[a-z0-9])$/;

let experts = []; // [{id, name}] of the members who can hold a room (managers only)
let rooms = [];

const linkOf = (room) => `${window.location.origin}${room.join_path}`;
const expertName = (id) => {
  if (id === me) return t('Me');
  const found = experts.find((expert) => expert.id === id);
  return found ? found.name : '';
};

// --- checks shared by the new-room form and the edit forms ------------------------------------

function titleProblem(title) {
  if (!title || title.length > 120 || badLine(title)) return t('Enter a name of 1 to 120 characters, without < or >.');
  return '';
}

function welcomeProblem(text) {
  if (text.length > welcomeMax) return t('The welcome text can be at most %(max)s characters.', { max: welcomeMax });
  if (badText(text)) return t('The welcome text contains characters that cannot be shown. Type it again without them.');
  return '';
}

function counter(textarea, line) {
  const update = () => {
    line.textContent = line.dataset.template
      .replace('%(count)s', String(textarea.value.length))
      .replace('%(max)s', String(welcomeMax));
  };
  textarea.addEventListener('input', update);
  update();
}

function expertSelect(id, selected) {
  const select = el('select', { id });
  const options = experts.length ? experts : [{ id: me, name: t('Me') }];
  for (const expert of options) {
    select.append(el('option', { value: expert.id, selected: expert.id === selected }, expert.id === me ? t('Me') : expert.name));
  }
  return select;
}

// --- check-in steps: a national eID check and a card fee (shared by both forms) ----------------

const EIDS = [
  ['', () => t('No identity check')],
  ['no_bankid', () => t('Norwegian BankID')],
  ['dk_mitid', () => t('Danish MitID')],
  ['se_bankid', () => t('Swedish BankID')],
];
const CURRENCIES = ['nok', 'dkk', 'sek', 'eur', 'usd', 'gbp', 'chf'];
const eidName = (code) => (EIDS.find(([value]) => value === code) || EIDS[0])[1]();

function money(fee) {
  return new Intl.NumberFormat(intlLocale, { style: 'currency', currency: fee.currency.toUpperCase() }).format(fee.amount_minor / 100);
}

// "500", "500.00", "500,50" → 50000 / 50050 minor units; null when it is not an amount.
function minorUnits(text) {
  const match = /^\s*(\d{1,6})(?:[.,](\d{1,2}))?\s*$/.exec(text);
  if (!match) return null;
  return Number(match[1]) * 100 + Number((match[2] || '0').padEnd(2, '0'));
}

function checkinFields(prefix, room) {
  const fee = room && room.fee;
  const eid = el('select', { id: `${prefix}-eid`, 'aria-describedby': `${prefix}-eid-hint` });
  for (const [value, name] of EIDS) eid.append(el('option', { value, selected: (room ? room.identity_check : '') === value }, name()));
  const charge = el('input', { type: 'checkbox', id: `${prefix}-charge`, checked: Boolean(fee), 'aria-controls': `${prefix}-fee` });
  const feesOff = !cardFees && !fee;
  if (feesOff) {
    charge.disabled = true;
    charge.setAttribute('aria-describedby', `${prefix}-charge-hint`);
  }
  const amount = el('input', {
    type: 'text', id: `${prefix}-amount`, inputMode: 'decimal', autocomplete: 'off', maxLength: 10,
    value: fee ? (fee.amount_minor / 100).toFixed(2) : '', 'aria-describedby': `${prefix}-amount-hint ${prefix}-amount-error`,
  });
  const amountError = el('p', { className: 'field-error', id: `${prefix}-amount-error` });
  const currency = el('select', { id: `${prefix}-currency` });
  for (const code of CURRENCIES) currency.append(el('option', { value: code, selected: (fee ? fee.currency : 'nok') === code }, code.toUpperCase()));
  const description = el('input', {
    type: 'text', id: `${prefix}-fee-description`, maxLength: 120, autocomplete: 'off',
    value: fee ? fee.description : '', 'aria-describedby': `${prefix}-fee-description-hint`,
  });
  const feeBox = el('div', { id: `${prefix}-fee`, className: 'fee-fields', hidden: !fee },
    el('label', { htmlFor: `${prefix}-amount` }, t('Amount')), amount,
    el('p', { className: 'hint', id: `${prefix}-amount-hint` }, t('For example 500 or 450.50.')), amountError,
    el('label', { htmlFor: `${prefix}-currency` }, t('Currency')), currency,
    el('label', { htmlFor: `${prefix}-fee-description` }, t('What the fee is for'), ' ', el('span', { className: 'muted' }, t('(optional)'))), description,
    el('p', { className: 'hint', id: `${prefix}-fee-description-hint` }, t('Visitors see it on the payment page and their card statement, e.g. Consultation, 30 minutes.')));
  charge.addEventListener('change', () => {
    feeBox.hidden = !charge.checked;
    if (charge.checked) amount.focus();
  });
  const parts = [
    el('fieldset', { className: 'checkin' },
      el('legend', {}, t('Before the waiting room')),
      el('label', { htmlFor: `${prefix}-eid` }, t('Identity check')), eid,
      el('p', { className: 'hint', id: `${prefix}-eid-hint` }, t('Visitors prove who they are with their national eID. You see the verified name and ID number.')),
      el('label', { className: 'check' }, charge, ' ', el('span', {}, t('Visitors pay a fee by card before they wait'))),
      feesOff ? el('p', { className: 'hint', id: `${prefix}-charge-hint` }, main.dataset.noCardFees) : null,
      feeBox),
  ];
  // The room's check-in settings as the API takes them, or a problem to show.
  function read() {
    amountError.textContent = '';
    amount.removeAttribute('aria-invalid');
    if (!charge.checked) return { value: { identity_check: eid.value, fee: null } };
    const minor = minorUnits(amount.value);
    if (minor === null || minor < 100 || minor > 10000000) {
      fieldError(amount, amountError, t('Enter an amount between 1 and 100,000, e.g. 500 or 450.50.'));
      return { problem: amount };
    }
    const text = description.value.trim();
    return { value: { identity_check: eid.value, fee: { amount_minor: minor, currency: currency.value, description: text } } };
  }
  function reset() {
    eid.value = '';
    charge.checked = false;
    feeBox.hidden = true;
    amount.value = '';
    description.value = '';
    currency.value = 'nok';
  }
  return { parts, read, reset };
}

function checkinSummary(room) {
  const steps = [];
  if (room.identity_check) steps.push(t('Identity check: %(eid)s', { eid: eidName(room.identity_check) }));
  if (room.fee) steps.push(t('Fee: %(amount)s', { amount: money(room.fee) }));
  return steps.length ? el('p', { className: 'muted small checkin-summary' }, steps.join(' · ')) : null;
}

// --- the list --------------------------------------------------------------------------------

function roomItem(room) {
  const id = room.id;
  const linkField = el('input', { type: 'text', id: `link-${id}`, value: linkOf(room), readOnly: true, className: 'link-field' });
  const copyButton = el('button', { type: 'button', className: 'secondary' }, t('Copy the link'));
  copyButton.addEventListener('click', async () => {
    const done = await copy(linkOf(room), linkField);
    say(errorBox, noticeBox, {
      notice: done ? t('The link of %(title)s is copied.', { title: room.title }) : t('Press Ctrl+C (or ⌘+C) to copy the selected link.'),
    });
  });
  const editButton = el('button', { type: 'button', className: 'secondary', 'aria-expanded': 'false' }, t('Edit'));
  const deleteButton = el('button', { type: 'button', className: 'danger' }, t('Delete…'));
  const welcome = room.welcome_text
    ? el('p', { className: 'welcome' }, room.welcome_text)
    : el('p', { className: 'welcome muted' }, t('No welcome text.'));
  const owner = manager ? el('p', { className: 'muted small' }, t('Expert: %(name)s', { name: expertName(room.expert_id) || t('someone who left') })) : null;

  const edit = editForm(room);
  editButton.addEventListener('click', () => {
    const open = edit.hidden;
    edit.hidden = !open;
    editButton.setAttribute('aria-expanded', String(open));
    if (open) edit.querySelector('input').focus();
  });
  edit.addEventListener('reset', () => {
    edit.hidden = true;
    editButton.setAttribute('aria-expanded', 'false');
    editButton.focus();
  });
  deleteButton.addEventListener('click', () => removeRoom(room));

  return el(
    'li',
    { className: 'room', dataset: { id, slug: room.slug } },
    el('h3', {}, room.title),
    owner,
    el('div', { className: 'room-link' },
      el('label', { htmlFor: `link-${id}`, className: 'sr-only' }, t('Link of %(title)s', { title: room.title })),
      linkField,
      copyButton),
    welcome,
    checkinSummary(room),
    el('div', { className: 'controls' }, editButton, deleteButton),
    edit,
  );
}

function editForm(room) {
  const id = room.id;
  const title = el('input', { type: 'text', id: `edit-title-${id}`, value: room.title, maxLength: 120, autocomplete: 'off', 'aria-describedby': `edit-title-error-${id}` });
  const titleError = el('p', { className: 'field-error', id: `edit-title-error-${id}` });
  const welcome = el('textarea', { id: `edit-welcome-${id}`, rows: 4, maxLength: welcomeMax, 'aria-describedby': `edit-welcome-count-${id} edit-welcome-error-${id}` });
  welcome.value = room.welcome_text || '';
  const count = el('p', { className: 'hint counter', id: `edit-welcome-count-${id}`, dataset: { template: $('room-welcome-count').dataset.template } });
  const welcomeError = el('p', { className: 'field-error', id: `edit-welcome-error-${id}` });
  counter(welcome, count);
  const parts = [
    el('label', { htmlFor: `edit-title-${id}` }, t('Name of the room')), title, titleError,
    el('label', { htmlFor: `edit-welcome-${id}` }, t('Welcome text')), welcome, count, welcomeError,
  ];
  let expert = null;
  if (manager) {
    expert = expertSelect(`edit-expert-${id}`, room.expert_id);
    parts.push(el('label', { htmlFor: `edit-expert-${id}` }, t('Expert')), expert);
  }
  const steps = checkinFields(`edit-${id}`, room);
  parts.push(...steps.parts);
  const form = el('form', { className: 'room-edit', hidden: true, noValidate: true },
    ...parts,
    el('div', { className: 'controls' },
      el('button', { type: 'submit' }, t('Save the changes')),
      el('button', { type: 'reset', className: 'secondary' }, t('Cancel'))));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    say(errorBox, noticeBox);
    const newTitle = title.value.trim();
    const text = welcome.value.trim();
    const problems = [[title, titleError, titleProblem(newTitle)], [welcome, welcomeError, welcomeProblem(text)]];
    let first = null;
    for (const [input, line, problem] of problems) {
      fieldError(input, line, problem);
      if (problem && !first) first = input;
    }
    const checked = steps.read();
    if (checked.problem && !first) first = checked.problem;
    if (first) {
      first.focus();
      return;
    }
    const change = {};
    if (newTitle !== room.title) change.title = newTitle;
    if (text !== (room.welcome_text || '')) change.welcome_text = text;
    if (expert && expert.value !== room.expert_id) change.expert_id = expert.value;
    if (checked.value.identity_check !== (room.identity_check || '')) change.identity_check = checked.value.identity_check;
    if (JSON.stringify(checked.value.fee) !== JSON.stringify(room.fee || null)) change.fee = checked.value.fee;
    if (!Object.keys(change).length) {
      form.reset();
      return;
    }
    try {
      const saved = await api(`/rooms/${room.id}`, { method: 'PATCH', json: change });
      Object.assign(room, saved);
      render();
      say(errorBox, noticeBox, { notice: t('The room %(title)s is saved.', { title: saved.title }) });
      const heading = list.querySelector(`li[data-id="${room.id}"] h3`);
      if (heading) {
        heading.setAttribute('tabindex', '-1');
        heading.focus();
      }
    } catch (error) {
      const refused = error instanceof ApiError ? error.fields() : new Set();
      if (refused.has('title')) fieldError(title, titleError, t('Enter a name of 1 to 120 characters, without < or >.'));
      if (refused.has('welcome_text')) fieldError(welcome, welcomeError, t('The welcome text contains characters that cannot be shown. Type it again without them.'));
      say(errorBox, noticeBox, { error: problemText(error) });
    }
  });
  return form;
}

function render() {
  const shown = manager ? rooms : rooms.filter((room) => room.expert_id === me);
  list.replaceChildren(...shown.map(roomItem));
  list.removeAttribute('aria-busy');
  empty.hidden = shown.length > 0;
}

async function removeRoom(room) {
  say(errorBox, noticeBox);
  const question = t('Delete the room %(title)s? Its link stops working at once.', { title: room.title });
  if (!window.confirm(question)) return;
  try {
    await api(`/rooms/${room.id}`, { method: 'DELETE' });
    rooms = rooms.filter((r) => r.id !== room.id);
    render();
    say(errorBox, noticeBox, { notice: t('The room %(title)s is deleted.', { title: room.title }) });
    $('room-list-title').setAttribute('tabindex', '-1');
    $('room-list-title').focus();
  } catch (error) {
    say(errorBox, noticeBox, { error: problemText(error) });
  }
}

async function load() {
  try {
    if (manager) {
      // The members who can hold a room (reading them is access-logged by the API).
      const members = await api('/members');
      experts = members
        .filter((m) => ['owner', 'admin', 'expert'].includes(m.role))
        .map((m) => ({ id: m.id, name: m.name }))
        .sort((a, b) => (a.id === me ? -1 : b.id === me ? 1 : a.name.localeCompare(b.name)));
      const select = $('room-expert');
      select.replaceChildren(...experts.map((e) => el('option', { value: e.id, selected: e.id === me }, e.id === me ? t('Me') : e.name)));
    }
    rooms = await api('/rooms');
    render();
  } catch (error) {
    list.removeAttribute('aria-busy');
    say(errorBox, noticeBox, { error: problemText(error) });
  }
}

// --- the new-room form ----------------------------------------------------------------------

const titleInput = $('room-title');
const slugInput = $('room-slug');
const welcomeInput = $('room-welcome');
const preview = $('room-slug-preview');
let slugEdited = false;

// An address from the name while the person has not typed one: "Dr. Ødegård" → "dr-odegard".
function suggest(title) {
  return title
    .toLowerCase()
    .replace(/[øØ]/g, 'o').replace(/[æÆ]/g, 'ae').replace(/ß/g, 'ss')
    .normalize('NFKD').replace(/[\u0300-\u036f]/g, '')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60)
    .replace(/-+$/, '');
}

function showPreview() {
  const value = slugInput.value.trim();
  preview.textContent = value ? t('Link: %(link)s', { link: `${window.location.origin}${preview.dataset.base}${value}` }) : '';
}

titleInput.addEventListener('input', () => {
  if (!slugEdited) {
    slugInput.value = suggest(titleInput.value);
    showPreview();
  }
});
slugInput.addEventListener('input', () => {
  slugEdited = slugInput.value !== '';
  showPreview();
});
counter(welcomeInput, $('room-welcome-count'));
const newSteps = checkinFields('room', null);
$('room-checkin').replaceChildren(...newSteps.parts);

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  say(errorBox, noticeBox);
  const title = titleInput.value.trim();
  const slug = slugInput.value.trim();
  const text = welcomeInput.value.trim();
  const problems = [
    [titleInput, $('room-title-error'), titleProblem(title)],
    [slugInput, $('room-slug-error'), SLUG.test(slug) ? '' : t('Use 3 to 60 lower-case letters, digits and hyphens; start and end with a letter or digit.')],
    [welcomeInput, $('room-welcome-error'), welcomeProblem(text)],
  ];
  let first = null;
  for (const [input, line, problem] of problems) {
    fieldError(input, line, problem);
    if (problem && !first) first = input;
  }
  const checked = newSteps.read();
  if (checked.problem && !first) first = checked.problem;
  if (first) {
    first.focus();
    return;
  }
  const body = { title, slug, welcome_text: text, ...checked.value };
  if (manager) body.expert_id = $('room-expert').value;
  const button = form.querySelector('button[type="submit"]');
  button.disabled = true;
  try {
    const room = await api('/rooms', { method: 'POST', json: body });
    rooms = [...rooms, room].sort((a, b) => a.slug.localeCompare(b.slug));
    render();
    form.reset();
    newSteps.reset();
    slugEdited = false;
    showPreview();
    welcomeInput.dispatchEvent(new Event('input'));
    say(errorBox, noticeBox, { notice: t('The room %(title)s is created. Its link is in the list.', { title: room.title }) });
  } catch (error) {
    if (error instanceof ApiError && error.status === 409) {
      fieldError(slugInput, $('room-slug-error'), t('This address is already used or reserved. Choose another.'));
      slugInput.focus();
      return;
    }
    const refused = error instanceof ApiError ? error.fields() : new Set();
    if (refused.has('slug')) fieldError(slugInput, $('room-slug-error'), t('Use 3 to 60 lower-case letters, digits and hyphens; start and end with a letter or digit.'));
    if (refused.has('title')) fieldError(titleInput, $('room-title-error'), t('Enter a name of 1 to 120 characters, without < or >.'));
    say(errorBox, noticeBox, { error: problemText(error) });
  } finally {
    button.disabled = false;
  }
});

load();
