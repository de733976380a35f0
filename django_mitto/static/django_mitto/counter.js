/*
 * django-mitto: live SMS counter for the admin's compose form.
 *
 * Counts exactly like django_mitto/encoding.py:
 *   GSM      160 septets in one part, 153 per part when concatenated; characters of the
 *            extension table cost 2 septets and an escape pair is never split across parts.
 *   Unicode  70 UTF-16 code units in one part, 67 per part; a character outside the Basic
 *            Multilingual Plane (most emoji) costs 2 units and is never split.
 *   Binary   hexadecimal digits, two per byte: 140 bytes in one part, 134 per part.
 *   Auto     GSM when every character is in GSM 03.38, Unicode otherwise.
 * Characters are counted by code point, so a decomposed "e\u0301" is two characters.
 *
 * The GSM tables and part sizes are not written here: the page carries them as JSON rendered
 * from encoding.GSM_BASIC_CHARACTERS / GSM_EXTENSION_CHARACTERS (see the SmsTextWidget).
 *
 * window.djangoMittoCounter.analyze(text, encoding, tables) is the pure counting function;
 * it returns {requested, encoding, characters, units, parts, partSize, remaining, nonGsm,
 * error, invalid}. error is "" or one of "gsm", "binary", "binary_odd", "encoding".
 */
(function () {
  "use strict";

  var GSM = "GSM";
  var UNICODE = "Unicode";
  var BINARY = "Binary";
  var AUTO = "Auto";
  var NAMES = { gsm: GSM, unicode: UNICODE, binary: BINARY, auto: AUTO };
  var HEX = /^[0-9A-Fa-f]$/;

  var prepared = typeof WeakMap === "function" ? new WeakMap() : null;

  function prepare(tables) {
    var cached = prepared && prepared.get(tables);
    if (cached) {
      return cached;
    }
    var basic = new Set(Array.from(tables.basic));
    var extension = new Set();
    Array.from(tables.extension).forEach(function (c) {
      if (!basic.has(c)) {
        extension.add(c);
      }
    });
    cached = { basic: basic, extension: extension, single: tables.single, multi: tables.multi };
    if (prepared) {
      prepared.set(tables, cached);
    }
    return cached;
  }

  function result(requested, used, characters, units, parts, partSize, remaining, nonGsm) {
    return {
      requested: requested,
      encoding: used,
      characters: characters,
      units: units,
      parts: parts,
      partSize: partSize,
      remaining: remaining,
      nonGsm: nonGsm,
      error: "",
      invalid: []
    };
  }

  function failure(requested, used, error, invalid, nonGsm) {
    var r = result(requested, used, 0, 0, 0, 0, 0, nonGsm || []);
    r.error = error;
    r.invalid = invalid || [];
    return r;
  }

  function distinct(chars, keep) {
    var seen = new Set();
    var out = [];
    chars.forEach(function (c) {
      if (keep(c) && !seen.has(c)) {
        seen.add(c);
        out.push(c);
      }
    });
    return out;
  }

  // Greedy packing: a character that does not fit what is left of a part starts the next one.
  function pack(widths, size) {
    var parts = 0;
    var used = 0;
    for (var i = 0; i < widths.length; i++) {
      if (used + widths[i] > size) {
        parts += 1;
        used = 0;
      }
      used += widths[i];
    }
    return { parts: parts + 1, last: used };
  }

  function analyze(text, encoding, tables) {
    var t = prepare(tables);
    var requested = NAMES[String(encoding || AUTO).trim().toLowerCase()];
    text = String(text || "");
    if (!requested) {
      return failure(String(encoding), "", "encoding");
    }
    var chars = Array.from(text); // code points
    var used;
    var widths;
    var nonGsm = [];
    if (requested === BINARY) {
      var invalid = distinct(chars, function (c) {
        return !HEX.test(c);
      });
      if (invalid.length) {
        return failure(requested, BINARY, "binary", invalid);
      }
      if (text.length % 2) {
        return failure(requested, BINARY, "binary_odd");
      }
      used = BINARY;
      widths = new Array(text.length / 2).fill(1);
    } else {
      nonGsm = distinct(chars, function (c) {
        return !t.basic.has(c) && !t.extension.has(c);
      });
      if (requested === GSM && nonGsm.length) {
        return failure(requested, GSM, "gsm", nonGsm, nonGsm);
      }
      used = requested === AUTO ? (nonGsm.length ? UNICODE : GSM) : requested;
      widths = chars.map(
        used === GSM
          ? function (c) {
              return t.extension.has(c) ? 2 : 1;
            }
          : function (c) {
              return c.length; // UTF-16 code units: 2 for a character outside the BMP
            }
      );
    }
    var units = widths.reduce(function (a, b) {
      return a + b;
    }, 0);
    var single = t.single[used];
    if (!widths.length) {
      return result(requested, used, 0, 0, 0, single, single, nonGsm);
    }
    if (units <= single) {
      return result(requested, used, widths.length, units, 1, single, single - units, nonGsm);
    }
    var size = t.multi[used];
    var packed = pack(widths, size);
    return result(requested, used, widths.length, units, packed.parts, size, size - packed.last, nonGsm);
  }

  // -- the widget ------------------------------------------------------------------------------

  var INVISIBLE = /^[\p{C}\p{M}\p{Z}]$/u;

  function codePoint(c) {
    return "U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
  }

  function chips(container, chars) {
    container.textContent = "";
    chars.forEach(function (c) {
      var mark = document.createElement("mark");
      mark.className = "mitto-chip";
      mark.title = codePoint(c);
      mark.textContent = INVISIBLE.test(c) ? codePoint(c) : c;
      container.appendChild(mark);
      container.appendChild(document.createTextNode(" "));
    });
  }

  function field(root, name) {
    return root.querySelector('[data-field="' + name + '"]');
  }

  function attach(root) {
    var textarea = document.getElementById(root.dataset.text);
    var tablesNode = document.getElementById(root.dataset.tables);
    if (!textarea || !tablesNode) {
      return;
    }
    var tables = JSON.parse(tablesNode.textContent);
    var select = textarea.form ? textarea.form.elements.namedItem(root.dataset.encodingName) : null;
    var units = { GSM: root.dataset.unitGsm, Unicode: root.dataset.unitUnicode, Binary: root.dataset.unitBinary };
    var errors = {
      gsm: root.dataset.errorGsm,
      binary: root.dataset.errorBinary,
      binary_odd: root.dataset.errorBinaryOdd
    };

    function render() {
      var info = analyze(textarea.value, select ? select.value : AUTO, tables);
      var failed = Boolean(info.error);
      root.classList.toggle("mitto-counter--error", failed);
      root.classList.toggle("mitto-counter--unicode", !failed && info.encoding === UNICODE);
      root.classList.toggle("mitto-counter--multipart", !failed && info.parts > 1);
      textarea.classList.toggle("mitto-invalid", failed);
      field(root, "encoding").textContent =
        info.requested === AUTO && info.encoding
          ? info.encoding + " (" + root.dataset.autoLabel + ")"
          : info.encoding || "?";
      field(root, "unit-label").textContent = units[info.encoding] || "";
      ["characters", "units", "parts", "remaining"].forEach(function (name) {
        field(root, name).textContent = failed ? "–" : String(info[name]);
      });
      var showNonGsm = info.nonGsm.length > 0 && info.requested !== BINARY;
      field(root, "nongsm-box").hidden = !showNonGsm || info.error === "gsm";
      chips(field(root, "nongsm"), showNonGsm ? info.nonGsm : []);
      var error = field(root, "error");
      error.hidden = !failed;
      error.textContent = "";
      if (failed) {
        error.appendChild(document.createTextNode((errors[info.error] || info.error) + " "));
        var list = document.createElement("span");
        chips(list, info.invalid);
        error.appendChild(list);
      }
    }

    textarea.addEventListener("input", render);
    if (select) {
      select.addEventListener("change", render);
      select.addEventListener("input", render);
    }
    render();
  }

  function init() {
    document.querySelectorAll("[data-mitto-counter]").forEach(function (root) {
      if (!root.dataset.mittoReady) {
        root.dataset.mittoReady = "1";
        attach(root);
      }
    });
  }

  window.djangoMittoCounter = { analyze: analyze, init: init };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
