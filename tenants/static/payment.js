// The payment step of check-in: the card goes into Stripe's own field (stripe.js), which
// makes a single-use token; the region service pays with it. A 3-D Secure check is done
// by stripe.js (confirmCardPayment), then the page asks the region service again.
// Works with Stripe and with localstripe's stand-in of stripe.js (card Element, createToken,
// confirmCardPayment): the subset both offer.
import { t } from '/static/i18n.js';

const main = document.querySelector('main');
const $ = (id) => document.getElementById(id);
const button = $('pay');

const stripe = window.Stripe(main.dataset.key);
const card = stripe.elements().create('card');
card.mount('#card');

function say(text) {
  $('message').textContent = text;
}

function ready(text) {
  say(text);
  button.disabled = false;
}

async function post(path, body) {
  try {
    const answer = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    const data = await answer.json().catch(() => ({}));
    return { status: answer.status, data };
  } catch (err) {
    return { status: 0, data: {} };
  }
}

const declined = () => t('Your card was declined or its check failed. Nothing was charged. You can try again with this or another card.');
const unavailable = () => t('The payment service did not answer. Nothing was charged twice. Please try again in a minute.');

async function settle(answer, rounds = 0) {
  if (answer.status === 409) {
    // Nothing to pay here now (paid already, or another step comes first): the visit's page says what is next.
    window.location.assign(main.dataset.visitPath);
    return;
  }
  if (answer.status === 400 && answer.data.error === 'invalid_email') {
    ready(t('Please check the e-mail address for the receipt. Nothing was charged.'));
    $('email').focus();
    return;
  }
  if (answer.status >= 400 || answer.status === 0) {
    ready(answer.status === 400 ? t('Please check the card details.') : unavailable());
    return;
  }
  const view = answer.data;
  main.dataset.state = view.outcome;
  if (view.outcome === 'paid') {
    say(t('Paid. Taking you to the waiting room…'));
    window.location.assign(main.dataset.visitPath);
  } else if (view.outcome === 'action' && rounds === 0) {
    say(t('Your bank asks you to confirm the payment.'));
    await stripe.confirmCardPayment(view.client_secret);
    await settle(await post(main.dataset.checkPath, {}), rounds + 1);
  } else if (view.outcome === 'declined' || view.outcome === 'action') {
    card.clear && card.clear();
    ready(declined());
  } else if (view.outcome === 'processing' && rounds < 15) {
    say(t('Your payment is being processed…'));
    await new Promise((resolve) => setTimeout(resolve, 2000));
    await settle(await post(main.dataset.checkPath, {}), rounds + 1);
  } else if (view.outcome === 'unavailable' || view.outcome === 'processing') {
    ready(unavailable());
  } else {
    ready('');
  }
}

$('pay-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  button.disabled = true;
  say(t('Paying…'));
  const made = await stripe.createToken(card);
  if (!made || made.error || !made.token) {
    ready(t('Please check the card details.'));
    return;
  }
  const email = $('email').value.trim();
  await settle(await post(main.dataset.payPath, { token: made.token.id, email: email || null }));
});

if (main.dataset.state === 'processing' || main.dataset.state === 'action') {
  button.disabled = true;
  settle({ status: 200, data: { outcome: 'processing' } }, 1);
}
