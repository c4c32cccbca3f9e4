/* Search results without raw LaTeX (loaded on every page through html_js_files).
 *
 * Sphinx's search page builds each result's snippet from the page's text, where math is
 * still its TeX source (MathJax typesets it only in the browser), and section titles in the
 * search index carry TeX too ("Why divide by \sqrt d?"). This turns the TeX of snippets and
 * titles into plain readable text (\sqrt d -> √d, \mathbf{V} -> V, x_{t} -> x_t).
 */
(function () {
  "use strict";

  const SYMBOLS = {
    alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", varepsilon: "ε",
    zeta: "ζ", eta: "η", theta: "θ", kappa: "κ", lambda: "λ", mu: "μ", nu: "ν", xi: "ξ",
    pi: "π", rho: "ρ", sigma: "σ", tau: "τ", phi: "φ", varphi: "φ", chi: "χ", psi: "ψ",
    omega: "ω", Gamma: "Γ", Delta: "Δ", Theta: "Θ", Lambda: "Λ", Pi: "Π", Sigma: "Σ",
    Phi: "Φ", Psi: "Ψ", Omega: "Ω", sum: "Σ", prod: "Π", int: "∫", infty: "∞",
    cdot: "·", cdots: "⋯", ldots: "…", dots: "…", times: "×", le: "≤", leq: "≤", ge: "≥",
    geq: "≥", ne: "≠", neq: "≠", approx: "≈", sim: "~", propto: "∝", in: "∈", to: "→",
    rightarrow: "→", leftarrow: "←", mapsto: "↦", partial: "∂", nabla: "∇", top: "ᵀ",
    sqrt: "√", pm: "±", mid: "|", lVert: "‖", rVert: "‖", langle: "⟨", rangle: "⟩",
    ell: "ℓ", odot: "⊙", otimes: "⊗", oplus: "⊕", quad: " ", qquad: " ", KL: "D_KL",
  };

  const wrap = (x) => (/[\s+\-*/=]/.test(x.trim()) ? `(${x.trim()})` : x.trim());

  function texToText(tex) {
    let s = tex;
    for (let i = 0; i < 4; i++) {
      s = s.replace(/\\sqrt\s*\{([^{}]*)\}/g, (m, x) => (x.length > 1 ? `√(${x})` : `√${x}`));
      s = s.replace(/\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}/g, (m, a, b) => `${wrap(a)}/${wrap(b)}`);
      s = s.replace(/\\(?:mathbf|mathrm|mathit|mathcal|mathbb|boldsymbol|text|textbf|operatorname|bm)\s*\{([^{}]*)\}/g, "$1");
      s = s.replace(/_\{([^{}]*)\}/g, "_$1");
      s = s.replace(/\^\{([^{}]*)\}/g, (m, x) => (x.trim().length > 1 ? `^(${x})` : `^${x}`));
    }
    s = s.replace(/\\(?:left|right|big|Big|bigg|Bigg|displaystyle|textstyle)\b/g, "");
    s = s.replace(/\\(?:mathbf|mathrm|mathit|mathcal|mathbb|boldsymbol|bm|text|operatorname)\b\s*/g, "");
    s = s.replace(/\\([A-Za-z]+)/g, (m, name) => (name in SYMBOLS ? SYMBOLS[name] : name));
    s = s.replace(/\\[,;:! ]/g, " ").replace(/\\([{}%&$#_])/g, "$1");
    s = s.replace(/[{}]/g, "");
    s = s.replace(/\^(T|ᵀ)(?![A-Za-z])/g, "ᵀ").replace(/\^2(?![0-9])/g, "²");
    return s.replace(/√\s+/g, "√").replace(/\s+/g, " ").trim();
  }

  function mathToText(text) {
    return text
      .replace(/\\\(([\s\S]*?)\\\)/g, (m, tex) => texToText(tex))
      .replace(/\\\[([\s\S]*?)\\\]/g, (m, tex) => " " + texToText(tex) + " ")
      .replace(/\$\$([\s\S]*?)\$\$/g, (m, tex) => " " + texToText(tex) + " ");
  }

  function patchSearch() {
    if (typeof Search === "undefined" || Search.__llmbook) return;
    Search.__llmbook = true;
    const htmlToText = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".math").forEach((el) => {
        el.textContent = mathToText(el.textContent);
      });
      return htmlToText(doc.documentElement.outerHTML, anchor);
    };
    const setIndex = Search.setIndex;
    Search.setIndex = (index) => setIndex.call(Search, cleanIndex(index));
    if (Search._index) cleanIndex(Search._index); // the index loaded before this script
  }

  function cleanIndex(index) {
    if (index && Array.isArray(index.titles)) {
      index.titles = index.titles.map((t) => (t.includes("\\") ? texToText(t) : t));
    }
    if (index && index.alltitles) {
      const clean = {};
      for (const [t, v] of Object.entries(index.alltitles)) {
        clean[t.includes("\\") ? texToText(t) : t] = v;
      }
      index.alltitles = clean;
    }
    return index;
  }

  window.llmbookTexToText = texToText; // used by the site test
  patchSearch();
  document.addEventListener("DOMContentLoaded", patchSearch);
})();
