// Data-subject requests (P17) for owners and admins: the list with due dates (overdue
// ones highlighted), filing, and per request the overview, the JSON export, the "who
// accessed their data" PDF (NEN 7513 ch. 5, Normen innsyn i logg), rectification,
// erasure and rejection. The subject's e-mail or phone travels only in POST bodies;
// nothing personal is put in a URL or in storage.
//
// A request's state (status, overdue, answered on) is drawn from one place, the list
// the server gives: after an action the list is read again and the open request takes
// its state from it, so the list and the detail always agree, and only the actions its
// state allows are offered.
import { t } from '/static/i18n.js';
import { $, api, day, download, el, messages } from '/static/portal.js';

const { error: showError, notice: showNotice } = messages('dsr-error', 'dsr-notice');
let current = null; // the request shown in the detail card (the detail, with the list's state)
let rows = []; // the list as last read

const KINDS = {
  access: () => t('Access'),
  portability: () => t('Portability'),
  rectification: () => t('Rectification'),
  erasure: () => t('Erasure'),
};
const BY = { email: () => t('e-mail address'), phone: () => t('phone number') };
const REASONS = {
  identity_not_verified: () => t('their identity could not be verified'),
  manifestly_unfounded: () => t('the request is manifestly unfounded'),
  duplicate: () => t('the same request was filed before'),
  withdrawn: () => t('the person withdrew it'),
};
// Messages the API is known to send, in the page's words.
const KNOWN = {
  'email: not a valid e-mail address': t('That is not a valid e-mail address.'),
  'phone: not a phone number with country code, e.g. +47 123 45 678':
    t('That is not a phone number with its country code, such as +47 123 45 678.'),
  'this request was rejected; file a new one to answer it': t('This request was rejected; file a new one to answer it.'),
  'no such data-subject request': t('This request was not found; reload the page.'),
};

const kindText = (r) => (KINDS[r.kind] || (() => r.kind))();
const answers = (r) => r.kind === 'access' || r.kind === 'portability';

function statusText(r) {
  if (r.status === 'completed') return t('Answered');
  if (r.status === 'rejected') return t('Rejected');
  return r.overdue ? t('Overdue') : t('Not answered');
}

// What may be done with a request in its state.
function actionsFor(r) {
  const open = r.status === 'received';
  const view = open || (r.status === 'completed' && answers(r));
  return {
    view,
    answerNote: open && answers(r),
    rectify: open && r.kind === 'rectification',
    erase: open && r.kind === 'erasure',
    reject: open,
  };
}

// --- the list --------------------------------------------------------------------------------

async function loadList() {
  rows = await api('/dsr', { known: KNOWN });
  const body = $('requests').querySelector('tbody');
  body.replaceChildren(...rows.map((r) => {
    const open = el('button', { type: 'button', className: 'secondary' }, t('Open'));
    open.setAttribute('aria-label', t('Open the request received %(day)s (%(kind)s)', { kind: kindText(r), day: day(r.received_at) }));
    open.addEventListener('click', () => openRequest(r.id).catch((e) => showError(e.message)));
    const row = el(
      'tr', { dataset: { id: r.id, status: r.status, overdue: String(r.overdue) } },
      el('td', {}, day(r.received_at)),
      el('td', {}, day(r.due_at)),
      el('td', {}, t('%(kind)s (by %(by)s)', { kind: kindText(r), by: (BY[r.identifier_kind] || (() => r.identifier_kind))() })),
      el('td', { className: `status ${r.overdue ? 'bad' : (r.status === 'completed' ? 'ok' : '')}` }, statusText(r)),
      el('td', {}, open),
    );
    if (r.overdue) row.classList.add('overdue');
    return row;
  }));
  $('requests-empty').hidden = rows.length > 0;
}

// The list read again, and the open request given the state it now has there.
async function refresh() {
  await loadList();
  if (!current) return;
  const listed = rows.find((r) => r.id === current.id);
  if (listed) {
    const { status, overdue, completed_at: completedAt, outcome } = listed;
    current = { ...current, status, overdue, completed_at: completedAt, outcome };
    render();
  }
}

$('file-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const by = $('dsr-by').value;
  const input = $('dsr-identifier');
  const value = input.value.trim();
  input.removeAttribute('aria-invalid');
  if (!value) {
    input.setAttribute('aria-invalid', 'true');
    showError(by === 'phone' ? t('Enter the phone number the person gave.') : t('Enter the e-mail address the person gave.'));
    input.focus();
    return;
  }
  try {
    const made = await api('/dsr', { method: 'POST', body: { kind: $('dsr-kind').value, [by]: value }, known: KNOWN });
    input.value = '';
    showNotice(t('Request filed; answer it by %(day)s.', { day: day(made.due_at) }));
    await loadList();
    await openRequest(made.id);
  } catch (e) {
    if (e.status === 400) { input.setAttribute('aria-invalid', 'true'); input.focus(); }
    showError(e.message);
  }
});

// --- one request -----------------------------------------------------------------------------

function fact(term, ...value) {
  return [el('dt', {}, term), el('dd', {}, ...value)];
}

function found(f) {
  return [
    t('Member accounts: %(count)s', { count: f.members }),
    t('Visits: %(count)s', { count: f.visits }),
    t('Calls: %(count)s', { count: f.calls }),
    t('Troubleshooting records: %(count)s', { count: f.telemetry }),
    t('Relay receipts: %(count)s', { count: f.relay_receipts }),
    t('Payment records (kept by law): %(count)s', { count: f.payments }),
  ].join(' · ');
}

function outcomeText(r) {
  const o = r.outcome || {};
  if (r.status === 'rejected') return t('Rejected: %(reason)s.', { reason: (REASONS[o.reason] || (() => o.reason || ''))() });
  if (r.status !== 'completed') return '';
  if (r.kind === 'erasure') {
    return t('Erased: visits %(visits)s, calls %(calls)s, member accounts %(members)s; payment records kept by law: %(kept)s.', {
      visits: o.visits ?? 0, calls: o.calls ?? 0, members: o.members ?? 0, kept: o.payments_kept ?? 0,
    });
  }
  if (r.kind === 'rectification') {
    return t('Corrected on member accounts: %(members)s, visits: %(visits)s.', { members: o.members ?? 0, visits: o.visits ?? 0 });
  }
  return t('Answered with the overview or the export.');
}

function render() {
  const r = current;
  const status = r.status === 'received'
    ? (r.overdue ? t('Not answered yet, overdue') : t('Not answered yet'))
    : t('%(status)s on %(day)s', { status: statusText(r), day: day(r.completed_at) });
  const outcome = outcomeText(r);
  $('detail-facts').replaceChildren(
    ...fact(t('About'), t('%(identifier)s (%(by)s)', { identifier: r.identifier, by: (BY[r.identifier_kind] || (() => r.identifier_kind))() })),
    ...fact(t('Kind'), kindText(r)),
    ...fact(t('Received'), day(r.received_at)),
    ...fact(t('Answer due'), r.overdue ? t('%(day)s (overdue)', { day: day(r.due_at) }) : day(r.due_at)),
    ...fact(t('Status'), el('span', { id: 'detail-status', className: r.overdue ? 'bad' : '' }, status)),
    ...fact(t('Records found'), found(r.found)),
    ...(outcome ? fact(t('Outcome'), outcome) : []),
  );
  $('detail-title').textContent = t('Request %(ref)s', { ref: r.id.slice(0, 8) });
  const can = actionsFor(r);
  $('view-actions').hidden = !can.view;
  $('answer-note').hidden = !can.answerNote;
  $('rectify-form').hidden = !can.rectify;
  $('erase-box').hidden = !can.erase;
  $('reject-form').hidden = !can.reject;
  let note = '';
  if (r.status === 'rejected') note = t('Nothing more can be done with a rejected request. If the person asks again, file a new request.');
  else if (r.status === 'completed' && !answers(r)) note = t('This request is answered. If the person asks again, file a new request.');
  else if (r.status === 'completed') note = t('This request is answered. You can show or download the answer again.');
  $('state-note').textContent = note;
  $('state-note').hidden = !note;
  $('detail').hidden = false;
}

async function openRequest(id) {
  const detail = await api(`/dsr/${id}`, { known: KNOWN });
  current = detail;
  $('overview').hidden = true;
  $('overview').textContent = '';
  render();
  $('detail-title').focus();
}

// Runs an action on the open request; the list and the detail are read again after it.
function action(id, run) {
  $(id).addEventListener(id.endsWith('-form') ? 'submit' : 'click', async (event) => {
    event.preventDefault();
    if (!current) return;
    try {
      await run(current);
    } catch (e) {
      showError(e.message);
    }
    try { await refresh(); } catch (e) { showError(e.message); }
  });
}

action('show-overview', async (r) => {
  const text = await api(`/dsr/${r.id}/overview`, { method: 'POST', as: 'text', known: KNOWN });
  $('overview').textContent = text;
  $('overview').hidden = false;
  showNotice(answers(r) && r.status === 'received'
    ? t('The overview is shown below; the request is now answered.')
    : t('The overview is shown below.'));
});

action('download-json', async (r) => {
  const { blob, name } = await api(`/dsr/${r.id}/export`, { method: 'POST', as: 'blob', known: KNOWN });
  download(blob, name || `data-subject-export-${r.id}.json`);
  showNotice(answers(r) && r.status === 'received'
    ? t('The export was downloaded; the request is now answered.')
    : t('The export was downloaded.'));
});

// The extract does not answer the request (the overview or the export does).
action('download-extract', async (r) => {
  const { blob, name } = await api(`/dsr/${r.id}/access-extract`, { method: 'POST', as: 'blob', known: KNOWN });
  download(blob, name || `access-log-extract-${r.id}.pdf`);
  showNotice(t('The PDF of who accessed their data was downloaded. Give it to the person with their overview or export.'));
});

action('rectify-form', async (r) => {
  const body = {};
  const name = $('rectify-name').value.trim();
  const phone = $('rectify-phone').value.trim();
  if (name) body.name = name;
  if (phone) body.phone = phone;
  if (!name && !phone) { showError(t('Enter the corrected name or phone number.')); $('rectify-name').focus(); return; }
  const done = await api(`/dsr/${r.id}/rectify`, { method: 'POST', body, known: KNOWN });
  $('rectify-name').value = '';
  $('rectify-phone').value = '';
  showNotice(t('Corrected on member accounts: %(members)s, visits: %(visits)s.', done.changed));
  await openRequest(r.id); // their records changed: read them again
});

action('erase', async (r) => {
  const sure = window.confirm(t('Erase this person’s visits, calls and member account in this organisation for good? Payment records are kept (required by law). This cannot be undone.'));
  if (!sure) return;
  const done = await api(`/dsr/${r.id}/erase`, { method: 'POST', body: { confirm: 'erase' }, known: KNOWN });
  const c = done.changed;
  showNotice(t('Erased: visits %(visits)s, calls %(calls)s, member accounts %(members)s; payment records kept by law: %(kept)s.', {
    visits: c.visits, calls: c.calls, members: c.members, kept: c.payments_kept,
  }));
  await openRequest(r.id); // their records are gone: read them again
});

action('reject-form', async (r) => {
  await api(`/dsr/${r.id}/reject`, { method: 'POST', body: { reason: $('reject-reason').value }, known: KNOWN });
  showNotice(t('The request was rejected.'));
});

loadList().catch((e) => showError(e.message));
