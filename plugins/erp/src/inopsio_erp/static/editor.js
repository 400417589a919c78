// The invoice editor: totals computed live by the server's totals engine (POST .../preview) as lines
// change, so the figures shown are exactly the ones the invoice will have; saving is one API call.
(function () {
  var form = document.getElementById("invoice-editor");
  if (!form) return;
  var tbody = form.querySelector("#lines tbody");
  var alertBox = form.querySelector(".alert");
  var timer = null;
  var sequence = 0;

  function text(value) { return value == null ? "" : String(value).trim(); }

  function body() {
    var lines = [];
    tbody.querySelectorAll("tr.line").forEach(function (row) {
      var get = function (key) { return text(row.querySelector('[data-key="' + key + '"]').value); };
      if (!get("description") && !get("unit_price")) return;
      var line = { description: get("description"), quantity: get("quantity").replace(",", ".") || "1", unit: get("unit") };
      if (get("unit_price")) line.unit_price = get("unit_price").replace(",", ".");
      var discount = get("discount").replace(",", ".");
      if (discount) { line.discount_kind = "percent"; line.discount_value = discount; }
      line.tax_rate_ids = get("tax") ? [get("tax")] : [];
      lines.push(line);
    });
    var data = { customer_id: form.querySelector("#customer_id").value, lines: lines, notes: form.querySelector("#notes").value };
    var discount = text(form.querySelector("#discount").value).replace(",", ".");
    if (discount) { data.discount_kind = "percent"; data.discount_value = discount; }
    return data;
  }

  function money(value, currency) {
    try {
      return new Intl.NumberFormat(document.documentElement.lang || undefined, { style: "currency", currency: currency }).format(Number(value));
    } catch (e) { return value + " " + currency; }
  }

  function showProblem(problem) {
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    if (!problem) { alertBox.hidden = true; return; }
    alertBox.textContent = problem.detail || "These lines cannot be invoiced.";
    alertBox.hidden = false;
    (problem.errors || []).forEach(function (err) {
      var m = /^\/lines\/(\d+)\/(\w+)/.exec(err.pointer || "");
      if (!m) return;
      var rows = Array.prototype.filter.call(tbody.querySelectorAll("tr.line"), function (row) {
        return text(row.querySelector('[data-key="description"]').value) || text(row.querySelector('[data-key="unit_price"]').value);
      });
      var key = m[2] === "discount_value" ? "discount" : m[2];
      var input = rows[Number(m[1])] && rows[Number(m[1])].querySelector('[data-key="' + key + '"]');
      if (input) input.setAttribute("aria-invalid", "true");
    });
  }

  async function refresh() {
    var data = body();
    if (!data.customer_id) return;
    var mine = ++sequence;
    var result = await window.inopsioApi("POST", "/api/v1/erp/invoices/preview", data);
    if (mine !== sequence) return;  // a newer edit already asked
    if (!result.ok) { showProblem(result.data); return; }
    showProblem(null);
    var invoice = result.data;
    ["subtotal", "discount_total", "tax_total", "total"].forEach(function (key) {
      form.querySelector('[data-total="' + key + '"]').textContent = money(invoice[key], invoice.currency);
    });
    var cells = Array.prototype.filter.call(tbody.querySelectorAll("tr.line"), function (row) {
      return text(row.querySelector('[data-key="description"]').value) || text(row.querySelector('[data-key="unit_price"]').value);
    });
    tbody.querySelectorAll("[data-amount]").forEach(function (cell) { cell.textContent = ""; });
    (invoice.lines || []).forEach(function (line, i) {
      if (cells[i]) cells[i].querySelector("[data-amount]").textContent = money(line.amount, invoice.currency);
    });
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 250); }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  form.querySelector("#add-line").addEventListener("click", function () {
    var template = tbody.querySelector("tr.line");
    var row = template.cloneNode(true);
    row.querySelectorAll("input").forEach(function (input) { input.value = input.getAttribute("data-key") === "quantity" ? "1" : ""; });
    row.querySelectorAll("select").forEach(function (select) { select.selectedIndex = 0; });
    row.querySelector("[data-amount]").textContent = "";
    tbody.appendChild(row);
    row.querySelector("input").focus();
  });
  tbody.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-remove-line]") : null;
    if (!button) return;
    if (tbody.querySelectorAll("tr.line").length > 1) button.closest("tr").remove();
    schedule();
  });
  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    event.stopImmediatePropagation();
    var id = form.getAttribute("data-invoice-id");
    var result = await window.inopsioApi(id ? "PUT" : "POST", "/api/v1/erp/invoices" + (id ? "/" + id : ""), body());
    if (!result.ok) { showProblem(result.data); return; }
    window.location.assign("/erp/invoices/" + result.data.id);
  }, true);
  refresh();
})();
