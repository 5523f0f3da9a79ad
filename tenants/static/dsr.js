// Data-subject requests (P17) for owners and admins: the list with due dates (overdue
// ones highlighted), filing, and per request the overview, the JSON export, the "who
// accessed their data" PDF (NEN 7513 ch. 5, Normen innsyn i logg), rectification and
// erasure. The subject's e-mail or phone travels only in POST bodies; nothing personal
// is put in a URL or in storage.

const main = document.querySelector('main');
const $ = (id) => document.getElementById(id);
const { slug, csrf } = main.dataset;
const apiBase = `/api/v1/orgs/${encodeURIComponent(slug)}/dsr`;
let current = null; // the request shown in the detail card

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const ACCEPT = { json: 'application/json', text: 'text/plain', pdf: 'application/pdf' };

async function api(path, { method = 'GET', body, as = 'json' } = {}) {
  const headers = { accept: ACCEPT[as] };
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(apiBase + path, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { problem = null; }
    if (response.status === 401) throw new ApiError(401, 'Your session has ended. Please log in again.');
    const details = problem && problem.details ? ` (${problem.details.join('; ')})` : '';
    throw new ApiError(response.status, ((problem && problem.message) || `The server answered ${response.status}.`) + details);
  }
  if (as === 'json') return response.json();
  return as === 'pdf' ? response.blob() : response.text();
}

function say(id, message) {
  const box = $(id);
  box.replaceChildren();
  if (message) box.append(message);
}
const showError = (message) => { say('dsr-error', message); if (message) say('dsr-notice', ''); };
const showNotice = (message) => { say('dsr-notice', message); if (message) say('dsr-error', ''); };

const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

const day = (iso) => new Date(iso).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric' });

function statusText(r) {
  if (r.overdue) return 'overdue';
  return r.status;
}

// --- the list --------------------------------------------------------------------------------

async function loadList() {
  const rows = await api('');
  const body = $('requests').querySelector('tbody');
  body.replaceChildren(...rows.map((r) => {
    const open = el('button', { type: 'button', className: 'secondary', textContent: 'Open' });
    open.addEventListener('click', () => openRequest(r.id).catch((e) => showError(e.message)));
    const row = el(
      'tr', { dataset: { id: r.id, status: r.status, overdue: String(r.overdue) } },
      el('td', {}, day(r.received_at)),
      el('td', {}, day(r.due_at)),
      el('td', {}, `${r.kind} (by ${r.identifier_kind})`),
      el('td', { className: r.overdue ? 'bad' : (r.status === 'completed' ? 'ok' : '') }, statusText(r)),
      el('td', {}, open),
    );
    if (r.overdue) row.classList.add('overdue');
    return row;
  }));
  $('requests-empty').hidden = rows.length > 0;
}

$('file-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const by = $('dsr-by').value;
  const value = $('dsr-identifier').value.trim();
  if (!value) { showError('Enter the e-mail address or phone number the person gave.'); return; }
  try {
    const made = await api('', { method: 'POST', body: { kind: $('dsr-kind').value, [by]: value } });
    $('dsr-identifier').value = '';
    showNotice(`Request filed; answer it by ${day(made.due_at)}.`);
    await loadList();
    await openRequest(made.id);
  } catch (e) {
    showError(e.message);
  }
});

// --- one request -----------------------------------------------------------------------------

function fact(term, value) {
  return [el('dt', {}, term), el('dd', {}, String(value))];
}

async function openRequest(id) {
  const r = await api(`/${id}`);
  current = r;
  const f = r.found;
  $('detail-facts').replaceChildren(
    ...fact('About', `${r.identifier} (${r.identifier_kind})`),
    ...fact('Kind', r.kind),
    ...fact('Received', day(r.received_at)),
    ...fact('Due', `${day(r.due_at)}${r.overdue ? ' — overdue' : ''}`),
    ...fact('Status', r.status + (r.completed_at ? ` on ${day(r.completed_at)}` : '')),
    ...fact('Records found', `${f.members} member account(s), ${f.visits} visit(s), ${f.calls} call(s), `
      + `${f.telemetry} troubleshooting record(s), ${f.relay_receipts} relay receipt(s), `
      + `${f.payments} payment record(s) (kept by law)`),
  );
  $('detail-title').textContent = `Request ${r.id.slice(0, 8)}`;
  $('rectify-form').hidden = r.kind !== 'rectification' || r.status === 'rejected';
  $('erase-box').hidden = r.kind !== 'erasure' || r.status === 'rejected';
  $('reject-form').hidden = r.status !== 'received';
  $('download-extract').hidden = r.status === 'rejected';
  $('extract-note').hidden = r.status === 'rejected';
  $('overview').hidden = true;
  $('overview').textContent = '';
  $('detail').hidden = false;
}

$('show-overview').addEventListener('click', async () => {
  if (!current) return;
  try {
    const text = await api(`/${current.id}/overview`, { method: 'POST', as: 'text' });
    $('overview').textContent = text;
    $('overview').hidden = false;
    await loadList();
  } catch (e) {
    showError(e.message);
  }
});

// Hands a blob to the browser as a file; the name carries the request id, never the person.
function download(blob, name) {
  const link = el('a', { href: URL.createObjectURL(blob), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

$('download-json').addEventListener('click', async () => {
  if (!current) return;
  try {
    const data = await api(`/${current.id}/export`, { method: 'POST' });
    download(new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' }), `data-subject-export-${current.id}.json`);
    showNotice('The export was downloaded.');
    await loadList();
  } catch (e) {
    showError(e.message);
  }
});

// The extract does not complete the request (the overview or the export answers an
// access request), so the list and the detail stay as they are.
$('download-extract').addEventListener('click', async () => {
  if (!current) return;
  try {
    const pdf = await api(`/${current.id}/access-extract`, { method: 'POST', as: 'pdf' });
    download(pdf, `access-log-extract-${current.id}.pdf`);
    showNotice('The PDF of who accessed their data was downloaded. Give it to the person with their overview '
      + 'or export.');
  } catch (e) {
    showError(e.message);
  }
});

$('rectify-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!current) return;
  const body = {};
  const name = $('rectify-name').value.trim();
  const phone = $('rectify-phone').value.trim();
  if (name) body.name = name;
  if (phone) body.phone = phone;
  if (!name && !phone) { showError('Enter the corrected name or phone.'); return; }
  try {
    const done = await api(`/${current.id}/rectify`, { method: 'POST', body });
    $('rectify-name').value = '';
    $('rectify-phone').value = '';
    showNotice(`Corrected on ${done.changed.members} member account(s) and ${done.changed.visits} visit(s).`);
    await loadList();
    await openRequest(current.id);
  } catch (e) {
    showError(e.message);
  }
});

$('erase').addEventListener('click', async () => {
  if (!current) return;
  const sure = window.confirm(
    'Erase this person\'s visits, calls and member account in this organisation for good? '
    + 'Payment records are kept (required by law). This cannot be undone.',
  );
  if (!sure) return;
  try {
    const done = await api(`/${current.id}/erase`, { method: 'POST', body: { confirm: 'erase' } });
    const c = done.changed;
    showNotice(`Erased ${c.visits} visit(s), ${c.calls} call(s), ${c.members} member account(s); `
      + `${c.payments_kept} payment record(s) kept by law.`);
    await loadList();
    await openRequest(current.id);
  } catch (e) {
    showError(e.message);
  }
});

$('reject-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (!current) return;
  try {
    await api(`/${current.id}/reject`, { method: 'POST', body: { reason: $('reject-reason').value } });
    showNotice('The request was rejected.');
    await loadList();
    await openRequest(current.id);
  } catch (e) {
    showError(e.message);
  }
});

loadList().catch((e) => showError(e.message));
