//! A component that imports an interface no Skiff node provides (`skiff:samples/gadget`): the
//! node refuses to start it, with an event naming the interface, and carries on.

wit_bindgen::generate!({
    inline: r#"
        package skiff:samples;

        interface gadget {
            poke: func() -> u32;
        }

        world needs-gadget {
            import gadget;
        }
    "#,
});

fn main() {
    println!("gadget says {}", skiff::samples::gadget::poke());
}
