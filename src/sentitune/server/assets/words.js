// Word attributions, for the prediction page and the labelling page alike: each word of
// `explanation.text` shaded green where it supports the answer and red where it speaks
// against it; the stronger, the deeper the colour (scaled to the text's largest).
"use strict";

function shadeWords(box, explanation) {
  box.replaceChildren();
  const largest = Math.max(1e-9, ...explanation.words.map((w) => Math.abs(w.attribution)));
  let at = 0;
  for (const word of explanation.words) {
    box.append(document.createTextNode(explanation.text.slice(at, word.start)));
    const span = document.createElement("span");
    span.textContent = word.word;
    const strength = Math.abs(word.attribution) / largest;
    const rgb = word.attribution >= 0 ? "31, 157, 85" : "180, 35, 24";
    span.style.backgroundColor = `rgba(${rgb}, ${(0.6 * strength).toFixed(3)})`;
    span.title = `${word.attribution >= 0 ? "+" : ""}${word.attribution.toFixed(3)}`;
    span.className = "word";
    box.append(span);
    at = word.end;
  }
  box.append(document.createTextNode(explanation.text.slice(at)));
}
