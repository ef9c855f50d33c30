// Starts the app. trunk would inject an inline loader; this file replaces it
// (Trunk.toml: inject_scripts = false) so that the page's
// Content-Security-Policy allows scripts from this origin only, with no
// 'unsafe-inline'. The names are fixed by Trunk.toml's `filehash = false`.
import init from "/web-client.js";

init({ module_or_path: "/web-client_bg.wasm" });
