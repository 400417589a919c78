// The CRM board: drag deals (SortableJS) or move them with their arrow buttons (keyboard); every
// move is the versioned move API call. A stale move (409) puts the card where the server says it is,
// with a message. Other people's moves arrive over the shell's WebSocket and move the card live.
(function () {
  "use strict";
  var board = document.getElementById("board");
  if (!board) return;
  var status = document.getElementById("board-status");
  var alertBox = document.getElementById("board-alert");
  var canMove = board.dataset.canMove === "true";

  function say(text) { if (status) status.textContent = text; }
  function warn(text) {
    if (alertBox) { alertBox.textContent = text; alertBox.hidden = false; }
    if (window.inopsioToast) window.inopsioToast(text, "error");
  }
  function clearWarning() { if (alertBox) { alertBox.hidden = true; alertBox.textContent = ""; } }

  function columns() { return Array.prototype.slice.call(board.querySelectorAll(".board-column")); }
  function column(stageId) { return board.querySelector('.board-column[data-stage="' + stageId + '"]'); }
  function cardsOf(col) { return Array.prototype.slice.call(col.querySelectorAll(".deal")); }
  function card(dealId) { return document.getElementById("deal-" + dealId); }
  function title(el) { var t = el.querySelector(".deal-title"); return t ? t.textContent : "The deal"; }

  // Buttons and counts follow the cards' places (a button that cannot move the card is hidden).
  function refresh() {
    var cols = columns();
    cols.forEach(function (col, at) {
      var cards = cardsOf(col);
      var count = col.querySelector(".stage-count");
      if (count) count.textContent = String(cards.length);
      cards.forEach(function (el, index) {
        var show = { up: index > 0, down: index < cards.length - 1, left: at > 0, right: at < cols.length - 1 };
        el.querySelectorAll("button[data-move]").forEach(function (b) { b.hidden = !show[b.dataset.move]; });
      });
    });
  }

  // Put a card at ``position`` of a stage (the server's numbering: 0 is the top).
  function place(el, stageId, position) {
    var col = column(stageId);
    if (!col) return false;
    var list = col.querySelector(".deal-list");
    var others = cardsOf(col).filter(function (c) { return c !== el; });
    list.insertBefore(el, others[position] || null);
    refresh();
    return true;
  }

  function where(el) {
    var col = el.closest(".board-column");
    return { stage: col.dataset.stage, position: cardsOf(col).indexOf(el) };
  }

  // One move through the API; ``undo`` puts the card back when the move failed for another reason.
  async function move(el, to, undo) {
    clearWarning();
    var result = await window.inopsioApi("POST", "/api/v1/crm/deals/" + el.dataset.deal + "/move", {
      stage_id: to.stage, position: to.position, version: Number(el.dataset.version)
    });
    if (result.ok) {
      el.dataset.version = String(result.data.version);
      place(el, result.data.stage_id, result.data.position);
      var col = column(result.data.stage_id);
      document.dispatchEvent(new CustomEvent("crm:board-changed"));
      say(title(el) + " moved to " + col.querySelector("h2").firstChild.textContent.trim() + ", position " + (result.data.position + 1) + ".");
      return true;
    }
    var current = result.data && result.data.current;
    if (result.status === 409 && current) {
      el.dataset.version = String(current.version);
      place(el, current.stage_id, current.position);
      warn("Someone moved " + title(el) + " meanwhile; the board shows it where it is now.");
    } else {
      undo();
      warn((result.data && result.data.detail) || "The deal could not be moved.");
    }
    return false;
  }

  function target(el, direction) {
    var col = el.closest(".board-column");
    var cols = columns();
    var index = cardsOf(col).indexOf(el);
    var at = cols.indexOf(col);
    if (direction === "up") return index > 0 ? { stage: col.dataset.stage, position: index - 1 } : null;
    if (direction === "down") return { stage: col.dataset.stage, position: index + 1 };
    var next = cols[at + (direction === "left" ? -1 : 1)];
    return next ? { stage: next.dataset.stage, position: 0 } : null;
  }

  // Keyboard (and mouse) moves with the arrow buttons; focus stays with the moved deal.
  board.addEventListener("click", async function (event) {
    var button = event.target.closest("button[data-move]");
    if (!button) return;
    var el = button.closest(".deal");
    var to = target(el, button.dataset.move);
    if (!to) return;
    var from = where(el);
    button.disabled = true;
    await move(el, to, function () { place(el, from.stage, from.position); });
    button.disabled = false;
    var same = el.querySelector('button[data-move="' + button.dataset.move + '"]:not([hidden])');
    var other = el.querySelector("button[data-move]:not([hidden])");
    (same || other || el).focus();
  });

  // Drag and drop between and within the stage lists.
  if (canMove && window.Sortable) {
    board.querySelectorAll(".deal-list").forEach(function (list) {
      window.Sortable.create(list, {
        group: "deals",
        animation: 120,
        forceFallback: true,
        filter: "button, a", // the move buttons and the company and contact links stay clickable
        preventOnFilter: false,
        ghostClass: "deal-ghost",
        chosenClass: "deal-chosen",
        onEnd: function (evt) {
          var el = evt.item;
          var fromStage = evt.from.closest(".board-column").dataset.stage;
          var to = where(el);
          if (evt.from === evt.to && evt.oldIndex === evt.newIndex) return;
          move(el, to, function () { place(el, fromStage, evt.oldIndex); });
        }
      });
    });
  }

  // Other people's moves: follow the CRM's deal events; a move is applied in place, newer versions only.
  document.addEventListener("DOMContentLoaded", function () {
    if (window.inopsioSubscribe) window.inopsioSubscribe(["crm.deal.*"]);
  });
  document.addEventListener("inopsio:event", function (event) {
    var e = event.detail || {};
    var data = e.data;
    if (!data || data.pipeline_id !== board.dataset.pipeline) return;
    var el = data.deal_id ? card(data.deal_id) : null;
    if (e.type === "crm.deal.stage_changed" && el) {
      if (Number(el.dataset.version) >= data.version) return;
      el.dataset.version = String(data.version);
      place(el, data.to_stage_id, data.position);
      document.dispatchEvent(new CustomEvent("crm:board-changed"));
    } else if (!el && data.deal_id) {
      window.location.reload(); // a deal this board has not shown yet: draw the board anew
    }
  });
  refresh();
  document.documentElement.dataset.crmBoard = "ready";
})();
