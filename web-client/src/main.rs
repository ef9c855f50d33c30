//! Entry point trunk builds: mounts the app. On the host it does nothing
//! (the crate's pure parts are tested there as a library).

fn main() {
    #[cfg(target_arch = "wasm32")]
    web_client::start();
}
