// The CRM board: move deals with their buttons (keyboard friendly), see everyone else's moves live.
// Moves go through the JSON API with the deal's version; a stale move shows the deal as it is now.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board) return;
  var status = document.getElementById("board-status");

  function say(text) { if (status) status.textContent = text; }

  function target(card, direction) {
    var column = card.closest(".board-column");
    var columns = Array.prototype.slice.call(board.querySelectorAll(".board-column"));
    var cards = Array.prototype.slice.call(column.querySelectorAll(".deal"));
    var index = cards.indexOf(card);
    var at = columns.indexOf(column);
    if (direction === "up") return { stage: column.dataset.stage, position: Math.max(0, index - 1) };
    if (direction === "down") return { stage: column.dataset.stage, position: index + 1 };
    var next = columns[at + (direction === "left" ? -1 : 1)];
    return next ? { stage: next.dataset.stage, position: 0 } : null;
  }

  board.addEventListener("click", async function (event) {
    var button = event.target.closest("button[data-move]");
    if (!button) return;
    var card = button.closest(".deal");
    var to = target(card, button.dataset.move);
    if (!to) return;
    button.disabled = true;
    var result = await window.inopsioApi("POST", "/api/v1/crm/deals/" + card.dataset.deal + "/move", {
      stage_id: to.stage, position: to.position, version: Number(card.dataset.version)
    });
    if (result.status === 409) {
      say("Someone moved this deal meanwhile; the board shows it where it is now.");
    } else if (!result.ok) {
      say((result.data && result.data.detail) || "The deal could not be moved.");
    }
    window.location.reload();
  });

  // Other people's moves: follow the CRM's deal events and redraw when one concerns this pipeline.
  if (window.inopsioSubscribe) window.inopsioSubscribe(["crm.deal.*"]);
  document.addEventListener("inopsio:event", function (event) {
    var data = event.detail && event.detail.data;
    if (data && data.pipeline_id === board.dataset.pipeline) window.location.reload();
  });
  document.documentElement.dataset.crmBoard = "ready";
})();
