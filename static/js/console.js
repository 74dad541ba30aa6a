// The console's only script: open the emergency-rollback <dialog> instead of following its link
// (without JavaScript the link leads to a confirmation page), and close dialogs on Cancel.
document.addEventListener("click", (event) => {
  const opener = event.target.closest("[data-open-dialog]");
  if (opener) {
    const dialog = document.getElementById(opener.dataset.openDialog);
    if (dialog && typeof dialog.showModal === "function") {
      event.preventDefault();
      dialog.showModal();
      const field = dialog.querySelector("textarea, input:not([type=hidden])");
      if (field) field.focus();
    }
    return;
  }
  const closer = event.target.closest("[data-close-dialog]");
  if (closer) {
    const dialog = closer.closest("dialog");
    if (dialog) dialog.close();
    else history.back();
  }
});
