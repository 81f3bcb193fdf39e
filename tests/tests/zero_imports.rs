use tlsfallback_engine::component::{
    EMBEDDED_COMPONENT, PolicyComponent, imports_of, new_wasmtime_engine,
};

#[test]
fn the_built_component_imports_nothing() {
    let engine = new_wasmtime_engine(None).unwrap();
    let imports = imports_of(&engine, EMBEDDED_COMPONENT).unwrap();
    assert!(imports.is_empty(), "the component imports {imports:?}");
}

#[test]
fn the_built_component_instantiates_with_an_empty_linker() {
    // PolicyComponent links against an empty Linker: any import would fail here.
    let mut component = PolicyComponent::builtin().unwrap();
    let decision = component
        .decide(
            &Default::default(),
            &Default::default(),
            None,
            None,
            1_767_225_600,
        )
        .unwrap();
    assert!(matches!(
        decision.action,
        policy_core::Action::Attempt { .. }
    ));
}

#[test]
fn a_component_that_imports_something_is_rejected_with_the_import_named() {
    // A component that imports a function `host-clock` (WAT text format of the component model).
    let wat = r#"(component
        (import "host-clock" (func $clock (result u64)))
    )"#;
    let bytes = wat_to_component(wat);
    let error = PolicyComponent::from_bytes(&bytes)
        .err()
        .expect("must be rejected");
    let message = format!("{error:#}");
    assert!(message.contains("host-clock"), "{message}");
    assert!(message.contains("must import nothing"), "{message}");
}

fn wat_to_component(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

#[test]
fn the_tools_component_imports_nothing() {
    let engine = new_wasmtime_engine(None).unwrap();
    let imports = imports_of(&engine, tlsfallback_engine::component::TOOLS_COMPONENT).unwrap();
    assert!(
        imports.is_empty(),
        "the tools component imports {imports:?}"
    );
}

#[test]
fn the_tools_component_decides_as_the_policy_component_does() {
    // The tools component exports the same engine (bindings/'s decider), so a host may use it as
    // a policy component; its decisions are the built-in's.
    let mut tools =
        PolicyComponent::from_bytes(tlsfallback_engine::component::TOOLS_COMPONENT).unwrap();
    let mut builtin = PolicyComponent::builtin().unwrap();
    let ask = |component: &mut PolicyComponent| {
        component
            .decide(
                &Default::default(),
                &Default::default(),
                None,
                None,
                1_767_225_600,
            )
            .unwrap()
    };
    assert_eq!(ask(&mut tools), ask(&mut builtin));
}
