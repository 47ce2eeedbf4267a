//! Skiff's node agent: registers a Node, watches the pods bound to it and runs their containers,
//! which are WebAssembly components, under wasmtime.
