// The error page's "Go back" button, shown only when there is a page to go back to
// (a link opened in a new tab has none). The Navigation API knows; where a browser
// lacks it, the length of the tab's history is the best guess.
const back = document.querySelector('[data-back]');
const canGoBack = window.navigation ? window.navigation.canGoBack : window.history.length > 1;
if (back && canGoBack) {
  back.hidden = false;
  back.addEventListener('click', () => window.history.back());
}
