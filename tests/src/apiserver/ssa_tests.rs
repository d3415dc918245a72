//! Unit tests of `ssa.rs`, kept beside it so that file stays short.

use serde_json::{Value, json};

use super::*;

fn writer(manager: &str, force: bool) -> Writer {
    Writer { manager: manager.into(), force }
}

fn managers(object: &Value) -> Vec<(String, String)> {
    object["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["manager"].as_str().unwrap().into(), e["operation"].as_str().unwrap().into()))
        .collect()
}

fn config(data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": data})
}

#[test]
fn apply_creates_and_owns_exactly_its_fields() {
    let created =
        apply(None, &config(json!({"a": "1"})), &writer("helm", false), "v1", Scope::Whole)
            .unwrap();
    assert_eq!(created["data"], json!({"a": "1"}));
    let entry = &created["metadata"]["managedFields"][0];
    assert_eq!(entry["manager"], "helm");
    assert_eq!(entry["operation"], "Apply");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert_eq!(entry["fieldsV1"], json!({"f:data": {"f:a": {}}}));
}

#[test]
fn another_managers_changed_field_is_a_409_unless_forced() {
    let live = apply(
        None,
        &config(json!({"a": "1", "b": "2"})),
        &writer("helm", false),
        "v1",
        Scope::Whole,
    )
    .unwrap();
    // Same value: shared ownership, no conflict.
    let shared =
        apply(Some(&live), &config(json!({"a": "1"})), &writer("other", false), "v1", Scope::Whole)
            .unwrap();
    assert_eq!(managers(&shared).len(), 2);

    let e = apply(
        Some(&shared),
        &config(json!({"a": "9"})),
        &writer("other", false),
        "v1",
        Scope::Whole,
    )
    .unwrap_err();
    assert_eq!((e.code, e.reason), (409, "Conflict"));
    assert_eq!(e.message, r#"Apply failed with 1 conflict: conflict with "helm": .data.a"#);
    assert_eq!(e.details["causes"][0]["reason"], "FieldManagerConflict");
    assert_eq!(e.details["causes"][0]["field"], ".data.a");

    let forced = apply(
        Some(&shared),
        &config(json!({"a": "9"})),
        &writer("other", true),
        "v1",
        Scope::Whole,
    )
    .unwrap();
    assert_eq!(forced["data"]["a"], "9");
    let helm = forced["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "helm")
        .unwrap();
    assert_eq!(helm["fieldsV1"], json!({"f:data": {"f:b": {}}}), "the forced field changed hands");
}

#[test]
fn an_update_takes_fields_and_conflicts_name_its_api_version() {
    let live = apply(None, &config(json!({"a": "1"})), &writer("helm", false), "v1", Scope::Whole)
        .unwrap();
    let mut patched = live.clone();
    patched["data"]["a"] = json!("2");
    track_update(Some(&live), &mut patched, &writer("kubectl-patch", false), "v1", Scope::Whole);
    assert_eq!(
        managers(&patched),
        [("kubectl-patch".into(), "Update".into())],
        "helm lost its only field"
    );

    let again = apply(
        Some(&patched),
        &config(json!({"a": "1"})),
        &writer("helm", false),
        "v1",
        Scope::Whole,
    )
    .unwrap_err();
    assert_eq!(
        again.message,
        r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.a"#
    );
}

#[test]
fn several_conflicts_are_listed_by_manager() {
    let live = apply(
        None,
        &config(json!({"a": "1", "b": "1"})),
        &writer("helm", false),
        "v1",
        Scope::Whole,
    )
    .unwrap();
    let e = apply(
        Some(&live),
        &config(json!({"a": "2", "b": "2"})),
        &writer("x", false),
        "v1",
        Scope::Whole,
    )
    .unwrap_err();
    assert_eq!(
        e.message,
        "Apply failed with 2 conflicts: conflicts with \"helm\":\n- .data.a\n- .data.b"
    );
}

#[test]
fn fields_no_longer_applied_are_removed_unless_someone_else_owns_them() {
    let live = apply(
        None,
        &config(json!({"a": "1", "b": "1"})),
        &writer("helm", false),
        "v1",
        Scope::Whole,
    )
    .unwrap();
    let shared =
        apply(Some(&live), &config(json!({"b": "1"})), &writer("other", false), "v1", Scope::Whole)
            .unwrap();
    let next = apply(Some(&shared), &config(json!({})), &writer("helm", false), "v1", Scope::Whole)
        .unwrap();
    assert_eq!(next["data"], json!({"b": "1"}), "a is helm's alone and goes; b stays with other");
}

#[test]
fn untracked_objects_gain_managers_only_on_apply() {
    let untracked = config(json!({"a": "1"}));
    let mut updated = untracked.clone();
    updated["data"]["a"] = json!("2");
    track_update(Some(&untracked), &mut updated, &writer("kubectl", false), "v1", Scope::Whole);
    assert!(updated["metadata"].get("managedFields").is_none());

    let e = apply(
        Some(&untracked),
        &config(json!({"a": "3"})),
        &writer("helm", false),
        "v1",
        Scope::Whole,
    )
    .unwrap_err();
    assert!(
        e.message.contains(r#"conflict with "before-first-apply" using v1: .data.a"#),
        "{}",
        e.message
    );
}

#[test]
fn status_is_out_of_the_main_resources_scope() {
    let deployment =
        json!({"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"readyReplicas": 1}});
    let mut created = deployment.clone();
    track_update(None, &mut created, &writer("helm", false), "apps/v1", Scope::MainResource);
    assert_eq!(
        created["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn managers_come_from_the_query_or_the_user_agent() {
    assert_eq!(Writer::from_request(Some("helm"), "Helm/3.17.2", false).manager, "helm");
    assert_eq!(Writer::from_request(None, "Helm/3.17.2 (linux)", false).manager, "Helm");
    assert_eq!(Writer::from_request(Some(""), "kubectl/v1.35.0", false).manager, "kubectl");
}

#[test]
fn apply_refuses_managed_fields_in_the_configuration() {
    let mut c = config(json!({}));
    c["metadata"]["managedFields"] = json!([{"manager": "x"}]);
    let e = apply(None, &c, &writer("helm", false), "v1", Scope::Whole).unwrap_err();
    assert_eq!((e.code, e.message.as_str()), (400, "metadata.managedFields must be nil"));
}

#[test]
fn patch_options_are_validated_as_the_api_server_does() {
    let e = patch_options_error(true, None, Some(false)).unwrap();
    assert_eq!((e.code, e.reason), (422, "Invalid"));
    assert_eq!(
        e.message,
        r#"PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch"#
    );
    let e = patch_options_error(false, Some("kubectl"), Some(true)).unwrap();
    assert!(e.message.ends_with("force: Forbidden: may not be specified for non-apply patch"));
    assert!(patch_options_error(true, Some("helm"), Some(true)).is_none());
    assert!(patch_options_error(false, None, None).is_none());
}
