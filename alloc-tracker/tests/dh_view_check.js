// Loads a `*.dhat.json` file in DH view's own code (dh_view.js, from Valgrind) under node,
// with a minimal DOM, and prints the tree DH view would display, or the error it would show.
//
//   apt-get install -y nodejs valgrind     # valgrind ships /usr/libexec/valgrind/dh_view.js
//   node alloc-tracker/tests/dh_view_check.js heap.dhat.json [path/to/dh_view.js]
//
// A manual check of the DHAT export (the automated tests check the fields DH view reads).
const fs = require("fs");
const src = fs.readFileSync(process.argv[3] || "/usr/libexec/valgrind/dh_view.js", "utf8");
class Node {
  constructor(tag) { this.tagName = tag; this.childNodes = []; this.text = ""; this.style = {}; this.classList = { add() {}, remove() {} }; }
  appendChild(c) { this.childNodes.push(c); c.parentNode = this; return c; }
  removeChild(c) { this.childNodes = this.childNodes.filter(x => x !== c); }
  get firstChild() { return this.childNodes[0]; }
  get lastChild() { return this.childNodes[this.childNodes.length - 1]; }
  set innerHTML(v) { this.childNodes = []; }
  set textContent(v) { this.text = v; this.childNodes = []; }
  get textContent() { return this.text + this.childNodes.map(c => c.textContent).join(""); }
  cloneNode() { const n = new Node(this.tagName); n.parentNode = this.parentNode; return n; }
  replaceChild(n, o) { this.childNodes = this.childNodes.map(c => c === o ? n : c); n.parentNode = this; }
  addEventListener() {} setAttribute() {} insertBefore(c) { this.childNodes.unshift(c); }
  get options() { return this.childNodes; }
}
global.document = {
  title: "", body: new Node("body"),
  createElement: t => new Node(t),
  createTextNode: t => { const n = new Node("#text"); n.text = t; return n; },
  getElementById: () => new Node("x"),
};
global.window = { addEventListener() {}, onload: null };
global.performance = { now: () => 0 };
const run = new Function(src + `
  return function(json) {
    const body = new Node("body");
    gMainDiv = body.appendChild(new Node("div")); gHeaderDiv = body.appendChild(new Node("div")); gTestingDiv = body.appendChild(new Node("div"));
    gLegendDiv = body.appendChild(new Node("div")); gTimingsDiv = body.appendChild(new Node("div"));
    gSelect = new Node("select");
    for (let d of gSelectData) { let o = new Node("option"); gSelect.appendChild(o); }
    gSelect.selectedIndex = 0;
    gFilename = "heap.dhat.json";
    gData = JSON.parse(json);
    buildTree();
    displayTree(0, 0, 0);
    return gHeaderDiv.textContent + "\\n" + gMainDiv.textContent;
  };`.replace(/^/, ""));
global.Node = Node;
const view = run();
console.log(view(fs.readFileSync(process.argv[2], "utf8")));
