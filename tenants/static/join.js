// The join page: the optional choices of what this browser keeps for the visitor
// (device-memory.js), and the form filled in from what was kept, if agreed.
import { decide, granted, rememberForm, rememberedForm } from './device-memory.js';
import { t } from '/static/i18n.js';

const $ = (id) => document.getElementById(id);
const section = $('device-choices');
const form = document.querySelector('form.join-form');

if (section && form) {
  section.hidden = false;
  const kept = rememberedForm();
  if (kept) {
    if (!form.elements.name.value && kept.name) form.elements.name.value = kept.name;
    if (!form.elements.phone.value && kept.phone) form.elements.phone.value = kept.phone;
  }
  for (const box of section.querySelectorAll('input[type=checkbox][data-purpose]')) {
    box.checked = granted(box.dataset.purpose);
    box.addEventListener('change', async () => {
      const yes = box.checked;
      $('device-choices-error').textContent = '';
      $('device-choices-status').textContent = '';
      box.disabled = true;
      const recorded = await decide(section.dataset.consentPath, box.dataset.purpose, yes, box.dataset.version);
      box.disabled = false;
      if (yes && !recorded) {
        box.checked = false;
        $('device-choices-error').textContent = t('Your choice could not be saved, so nothing is kept. Please try again.');
        return;
      }
      if (yes && box.dataset.purpose === 'prefill_forms') {
        rememberForm(form.elements.name.value, form.elements.phone.value);
      }
      $('device-choices-status').textContent = yes
        ? t('Saved. This browser keeps it for one year.')
        : t('Saved. What this browser kept is deleted.');
    });
  }
  form.addEventListener('submit', () => {
    rememberForm(form.elements.name.value, form.elements.phone.value);
  });
}
