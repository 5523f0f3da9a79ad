// Compliance reports for owners, admins and auditors: start one (it runs in the
// background in the organisation's region), follow its progress, download each format.

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
let polling = null;

async function api(path, { method = 'GET', body } = {}) {
  const headers = { accept: 'application/json' };
  if (method !== 'GET') headers['x-csrf-token'] = csrf;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(apiBase + path, {
    method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    let problem = null;
    try { problem = await response.json(); } catch { problem = null; }
    if (response.status === 401) throw new Error('Your session has ended. Please log in again.');
    throw new Error((problem && problem.message) || `The server answered ${response.status}.`);
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

const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key in node) node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
};

const day = (iso) => new Date(`${iso}T00:00:00Z`).toLocaleDateString([], { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });

function statusCell(report) {
  if (report.status === 'done') return el('td', {}, 'Ready');
  if (report.status === 'failed') return el('td', { className: 'overdue' }, `Failed: ${report.message}`);
  const bar = el('progress', { max: 100, value: report.progress, 'aria-label': `Progress of the ${FRAMEWORKS[report.framework]} report` });
  const label = report.status === 'queued' ? 'Waiting to start' : report.step;
  return el('td', {}, bar, ' ', el('span', { className: 'small' }, `${report.progress}% · ${label}`));
}

function downloads(report) {
  if (report.status !== 'done') return el('td', {}, '');
  const list = el('ul', { className: 'plain' });
  for (const format of report.formats) {
    list.append(el('li', {}, el('a', { href: `${apiBase}/${report.id}/files/${format}`, download: '' }, FORMATS[format] || format)));
  }
  return el('td', {}, list);
}

function render(reports) {
  const body = $('reports').querySelector('tbody');
  body.replaceChildren(...reports.map((r) => el('tr', {},
    el('td', {}, when(r.created_at)),
    el('td', {}, FRAMEWORKS[r.framework] || r.framework),
    el('td', {}, `${day(r.from)} – ${day(r.to)}`),
    statusCell(r),
    downloads(r))));
  $('reports-empty').hidden = reports.length > 0;
  const busy = reports.some((r) => r.status === 'queued' || r.status === 'running');
  if (busy && polling === null) polling = setInterval(refresh, 1500);
  if (!busy && polling !== null) { clearInterval(polling); polling = null; }
}

async function refresh() {
  try {
    render(await api(''));
  } catch (error) {
    showError(error.message);
  }
}

$('start-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const from = $('report-from').value;
  const to = $('report-to').value;
  if (!from || !to) { showError('Choose the first and the last day of the period.'); return; }
  if (to < from) { showError('The last day must not be before the first day.'); return; }
  try {
    await api('', { method: 'POST', body: { framework: $('report-framework').value, from, to } });
    showNotice('The report is being made. It appears in the list when it is ready.');
    await refresh();
  } catch (error) {
    showError(error.message);
  }
});

const today = new Date().toISOString().slice(0, 10);
$('report-to').value = today;
$('report-from').value = `${today.slice(0, 4)}-01-01`;
refresh();
