// Card payment on the customer's invoice page with Stripe.js v3 (loaded before this file from the
// address the tenant's Stripe settings give). The card's details go from Stripe's card element to
// Stripe only: this page sends the server the token Stripe made of them. The server confirms a
// PaymentIntent with it; 3-D Secure, when the card needs it, is completed here with
// confirmCardPayment. The payment is booked when Stripe's signed webhook reaches the server, so the
// page then polls the invoice's state and shows it once it changed.
(function () {
  "use strict";
  const form = document.getElementById("card-form");
  if (!form || typeof Stripe !== "function") return;
  const message = document.getElementById("card-message");
  const button = document.getElementById("pay-card");
  const stripe = Stripe(form.dataset.key);
  const card = stripe.elements().create("card");
  card.mount("#card-element");

  function say(text) {
    message.textContent = text;
  }

  async function waitForBooking() {
    const before = form.dataset.paid;
    for (let i = 0; i < 60; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const response = await fetch(form.dataset.statusUrl, { headers: { Accept: "application/json" } });
      if (response.ok) {
        const state = await response.json();
        if (state.amount_paid !== before) {
          window.location.reload();
          return;
        }
      }
    }
    say("Your payment was accepted; it will show here shortly.");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    say("Processing your payment…");
    try {
      const made = await stripe.createToken(card);
      if (made.error) throw new Error(made.error.message || "Check the card's details.");
      const response = await fetch(form.dataset.cardUrl, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ card_token: made.token.id, amount: document.getElementById("card-amount").value }),
      });
      const answer = await response.json();
      if (!response.ok) throw new Error(answer.detail || "The payment failed.");
      if (answer.status === "requires_action") {
        const confirmed = await stripe.confirmCardPayment(answer.client_secret);
        if (confirmed.error) throw new Error(confirmed.error.message || "The card's authentication failed.");
        const status = confirmed.paymentIntent && confirmed.paymentIntent.status;
        if (status !== "succeeded" && status !== "processing") throw new Error("The card's authentication failed.");
      } else if (answer.status !== "succeeded" && answer.status !== "processing") {
        throw new Error("The payment was not accepted (" + answer.status + ").");
      }
      say("Thank you: your payment is being confirmed.");
      await waitForBooking();
    } catch (error) {
      say(error.message || String(error));
      button.disabled = false;
    }
  });
})();
