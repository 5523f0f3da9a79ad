// Compliance reports for owners, admins and auditors: start one (it runs in the
// background in the organisation's region), follow its progress, download each format.
// Errors are told in the words of the form (its labels), never as the API's field names.

const main = document.querySelector('main');
const $ = (id) => document.getElementById(id);
const { slug, csrf } = main.dataset;
const apiBase = `/api/v1/orgs/${encodeURIComponent(slug)}/reports`;
const FRAMEWORKS = { gdpr: 'GDPR', hipaa: 'HIPAA Security Rule', nen7510: 'NEN 7510 / NEN 7513', normen: 'Normen' };
const FORMATS = {
  pdf: 'PDF report',
  json: 'JSON document',
  csv: 'Evidence workbook (CSV)',
  zip: 'Signed evidence archive (ZIP)',
  ropa: 'Record of processing (CSV)',
  oscal: 'OSCAL assessment results',
};
// The API's names of the form's fields: the input and the label a person sees.
const FIELDS = {
  framework: { input: 'report-framework', label: 'Framework', kind: 'choice' },
  from: { input: 'report-from', label: 'First day', kind: 'date' },
  to: { input: 'report-to', label: 'Last day', kind: 'date' },
};
const POLL_MS = 1500;
let polling = null;
let starting = false;
const startedHere = new Set(); // reports started on this page, announced when they end

class Problem extends Error {
  constructor(message, field = null) {
    super(message);
    this.field = field;
  }
}

const stop = (text) => (/[.!?]$/.test(text) ? text : `${text}.`);
const sentence = (text) => {
  const trimmed = String(text).trim();
  return stop(trimmed.charAt(0).toUpperCase() + trimmed.slice(1));
};

// What went wrong, in plain words, and which field of the form it is about.
function problemOf(status, body) {
  const message = body && typeof body.message === 'string' ? body.message : '';
  if (status === 401) {
    return new Problem(body && body.error === 'access_expired' ? sentence(message) : 'Your session has ended. Please log in again.');
  }
  if (status >= 500 || !message) return new Problem('Something went wrong on the server. Please try again in a moment.');
  const named = /^(\w+): ([\s\S]+)$/.exec(message);
  if (named && FIELDS[named[1]]) return new Problem(`${FIELDS[named[1]].label}: ${stop(named[2].trim())}`, named[1]);
  for (const detail of (body && Array.isArray(body.details)) ? body.details : []) {
    const at = /`\$\.(\w+)`|`(\w+)`/.exec(String(detail));
    const name = at && (at[1] || at[2]);
    if (name && FIELDS[name]) {
      const field = FIELDS[name];
      return new Problem(`${field.label}: ${field.kind === 'date' ? 'not a valid date' : 'not a valid choice'}.`, name);
    }
  }
  return new Problem(sentence(message));
}

async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response;
  try {
    response = await fetch(apiBase + path, {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new Problem('The region cannot be reached. Check your connection and try again.');
  }
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { problem = null; }
    throw problemOf(response.status, problem);
  }
  return response.json();
}

function say(id, message) {
  const box = $(id);
  box.replaceChildren();
  if (message) box.append(message);
}
const showError = (message) => { say('reports-error', message); if (message) say('reports-notice', ''); };
const showNotice = (message) => { say('reports-notice', message); if (message) say('reports-error', ''); };

function markField(name) {
  for (const [key, field] of Object.entries(FIELDS)) {
    const input = $(field.input);
    if (key === name) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  if (name) $(FIELDS[name].input).focus();
}

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

const day = (iso) => new Date(`${iso}T00:00:00Z`).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
const nameOf = (report) => FRAMEWORKS[report.framework] || report.framework;
const periodOf = (report) => `${day(report.from)} – ${day(report.to)}`;

function statusCell(report) {
  if (report.status === 'done') return el('td', { className: 'status ok' }, 'Ready');
  if (report.status === 'failed') {
    return el('td', { className: 'status bad' }, `Failed: ${report.message || 'the report could not be made.'}`);
  }
  const bar = el('progress', { max: 100, value: report.progress, 'aria-label': `Progress of the ${nameOf(report)} report` });
  const label = report.status === 'queued' ? 'Waiting to start' : report.step;
  return el('td', { className: 'status' }, bar, ' ', el('span', { className: 'small' }, `${report.progress}% · ${label}`));
}

function downloads(report) {
  if (report.status !== 'done') return el('td', { className: 'downloads' });
  const list = el('ul', { className: 'downloads' });
  for (const format of report.formats) {
    list.append(el('li', {}, el('a', {
      href: `${apiBase}/${report.id}/files/${format}`,
      download: '',
      dataset: { key: `${report.id}/${format}` },
      // Which report a link is of, for those who hear the page: its framework and period.
      'aria-describedby': `report-${report.id}-name report-${report.id}-period`,
    }, FORMATS[format] || format)));
  }
  return el('td', { className: 'downloads' }, list);
}

// The column headings, for the narrow layout that shows each row as a block.
const HEADINGS = ['Made', 'Framework', 'Period', 'Status', 'Download'];

function row(report, signature) {
  const cells = [
    el('td', {}, when(report.created_at)),
    el('td', { id: `report-${report.id}-name` }, nameOf(report)),
    el('td', { id: `report-${report.id}-period` }, periodOf(report)),
    statusCell(report),
    downloads(report),
  ];
  cells.forEach((cell, i) => { cell.dataset.label = HEADINGS[i]; });
  return el('tr', { dataset: { id: report.id, signature } }, ...cells);
}

// Rows that did not change are kept where they are (a new report's row is inserted
// before them, a changed one replaced in place), so a download link that has the
// keyboard focus keeps it while another report's progress is redrawn.
function render(reports) {
  const body = $('reports').querySelector('tbody');
  const shown = new Map([...body.children].map((node) => [node.dataset.id, node]));
  const wanted = reports.map((report) => {
    const signature = JSON.stringify(report);
    const old = shown.get(report.id);
    if (old && old.dataset.signature === signature) return old;
    const fresh = row(report, signature);
    if (old) old.replaceWith(fresh);
    return fresh;
  });
  const keep = new Set(wanted);
  for (const node of shown.values()) if (!keep.has(node) && node.parentNode === body) node.remove();
  let next = null;
  for (const node of [...wanted].reverse()) {
    if (node.parentNode !== body) body.insertBefore(node, next);
    next = node;
  }
  if (![...body.children].every((node, i) => node === wanted[i])) body.replaceChildren(...wanted);
  $('reports-empty').hidden = reports.length > 0;
}

function announce(reports) {
  for (const report of reports) {
    if (!startedHere.has(report.id) || report.status === 'queued' || report.status === 'running') continue;
    startedHere.delete(report.id);
    if (report.status === 'done') showNotice(`The ${nameOf(report)} report for ${periodOf(report)} is ready: download it in the list below.`);
    else showError(`The ${nameOf(report)} report could not be made: ${report.message || 'no reason was given.'}`);
  }
}

function stopPolling() {
  if (polling !== null) { clearInterval(polling); polling = null; }
}

async function refresh() {
  try {
    const reports = await api('');
    render(reports);
    announce(reports);
    const busy = reports.some((r) => r.status === 'queued' || r.status === 'running');
    if (busy && polling === null) polling = setInterval(refresh, POLL_MS);
    if (!busy) stopPolling();
  } catch (error) {
    stopPolling(); // a session that ended or a region away: asking again will not help
    showError(error.message);
  }
}

$('start-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const from = $('report-from').value;
  const to = $('report-to').value;
  markField(null);
  if (!from) { showError('First day: choose the first day of the period.'); markField('from'); return; }
  if (!to) { showError('Last day: choose the last day of the period.'); markField('to'); return; }
  if (to < from) { showError('Last day: the last day must not be before the first day.'); markField('to'); return; }
  if (starting) return; // a second press while the first is on its way
  starting = true;
  try {
    const made = await api('', { method: 'POST', body: { framework: $('report-framework').value, from, to } });
    startedHere.add(made.id);
    showNotice(`The ${nameOf(made)} report is being made; its progress is shown in the list below.`);
    await refresh();
  } catch (error) {
    showError(error.message);
    markField(error.field);
  } finally {
    starting = false;
  }
});

for (const field of Object.values(FIELDS)) {
  $(field.input).addEventListener('input', () => $(field.input).removeAttribute('aria-invalid'));
}

const today = new Date().toISOString().slice(0, 10);
$('report-to').value = today;
$('report-from').value = `${today.slice(0, 4)}-01-01`;
$('report-from').max = today;
$('report-to').max = today;
refresh();
