use policy_core::{DeliveryContext, Policy};
use tlsfallback_engine::component::{
    ComponentConfig, EMBEDDED_COMPONENT, PolicyComponent, new_wasmtime_engine, precompiled_path,
};

const NOW: u64 = 1_767_225_600;

fn first_decision(component: &mut PolicyComponent) -> policy_core::Decision {
    component
        .decide(
            &Policy::default(),
            &DeliveryContext::default(),
            None,
            None,
            NOW,
        )
        .unwrap()
}

#[test]
fn the_precompiled_cache_is_written_once_then_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let config = ComponentConfig::default();
    let path = precompiled_path(
        &new_wasmtime_engine(None).unwrap(),
        EMBEDDED_COMPONENT,
        cache.path(),
    );
    assert!(!path.exists());

    let mut compiled =
        PolicyComponent::load(EMBEDDED_COMPONENT, config, Some(cache.path())).unwrap();
    assert!(path.exists(), "no artifact at {}", path.display());
    let written = std::fs::metadata(&path).unwrap().modified().unwrap();

    let mut loaded = PolicyComponent::load(EMBEDDED_COMPONENT, config, Some(cache.path())).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        written,
        "the second load rewrote the artifact instead of using it"
    );
    let expected = policy_core::decide(
        &Policy::default(),
        &DeliveryContext::default(),
        None,
        None,
        NOW,
    );
    assert_eq!(first_decision(&mut compiled), expected);
    assert_eq!(first_decision(&mut loaded), expected);
}

#[test]
fn a_corrupt_cache_file_is_replaced_not_trusted() {
    let cache = tempfile::tempdir().unwrap();
    let path = precompiled_path(
        &new_wasmtime_engine(None).unwrap(),
        EMBEDDED_COMPONENT,
        cache.path(),
    );
    std::fs::write(&path, b"not a precompiled component").unwrap();
    let mut component = PolicyComponent::load(
        EMBEDDED_COMPONENT,
        ComponentConfig::default(),
        Some(cache.path()),
    )
    .unwrap();
    assert_ne!(
        std::fs::read(&path).unwrap(),
        b"not a precompiled component"
    );
    assert!(matches!(
        first_decision(&mut component).action,
        policy_core::Action::Attempt { .. }
    ));
}

#[test]
fn a_component_with_limits_answers_within_the_default_budget() {
    // Fuel is refilled before every call, so a long-lived instance never runs dry.
    let limited = ComponentConfig::with_limits(Default::default());
    let mut component = PolicyComponent::builtin_with(limited).unwrap();
    for _ in 0..100 {
        assert!(matches!(
            first_decision(&mut component).action,
            policy_core::Action::Attempt { .. }
        ));
    }
}
