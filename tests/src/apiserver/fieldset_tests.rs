//! Unit tests of `fieldset.rs`, kept beside it so that file stays short.

use serde_json::json;

use super::*;

fn path(elements: &[&str]) -> Path {
    elements.iter().map(|e| (*e).to_owned()).collect()
}

#[test]
fn leaves_keyed_items_and_set_items_are_members() {
    let deployment = json!({
        "metadata": {"labels": {"app": "x"}, "finalizers": ["a"]},
        "spec": {"replicas": 1, "template": {"spec": {
            "containers": [{"name": "app", "image": "i:1", "args": ["-v"]}],
        }}},
    });
    let set = fields_of(&deployment);
    let container = r#"k:{"name":"app"}"#;
    let spec = ["f:spec", "f:template", "f:spec", "f:containers"];
    assert!(set.contains(&path(&["f:metadata", "f:labels", "f:app"])));
    assert!(set.contains(&path(&["f:metadata", "f:finalizers", r#"v:"a""#])));
    assert!(set.contains(&path(&["f:spec", "f:replicas"])));
    assert!(set.contains(&path(&[&spec[..], &[container]].concat())));
    assert!(set.contains(&path(&[&spec[..], &[container, "f:image"]].concat())));
    assert!(set.is_leaf(&path(&[&spec[..], &[container, "f:args"]].concat())), "atomic list");
    assert!(!set.contains(&path(&["f:spec"])), "a struct is not itself a member");
}

#[test]
fn fields_v1_round_trips_with_dot_for_members_that_have_children() {
    let v1 = json!({"f:data": {"f:a": {}}, "f:spec": {"f:containers": {
        r#"k:{"name":"app"}"#: {".": {}, "f:image": {}},
    }}});
    let set = FieldSet::from_fields_v1(&v1);
    assert_eq!(set.to_fields_v1(), v1);
    assert_eq!(set.paths().len(), 3);
}

#[test]
fn values_are_found_and_removed_by_path() {
    let mut obj = json!({"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b"}]},
                         "data": {"x": "1"}});
    let image = path(&["f:spec", "f:containers", r#"k:{"name":"a"}"#, "f:image"]);
    assert_eq!(value_at(&obj, &image), Some(&json!("1")));
    remove_at(&mut obj, &path(&["f:spec", "f:containers", r#"k:{"name":"b"}"#]));
    assert_eq!(obj["spec"]["containers"].as_array().unwrap().len(), 1);
    remove_at(&mut obj, &path(&["f:data", "f:x"]));
    assert!(obj.get("data").is_none(), "an emptied map goes, as with omitempty: {obj}");
}

#[test]
fn paths_print_as_kubernetes_prints_them() {
    let p = path(&["f:spec", "f:containers", r#"k:{"name":"app"}"#, "f:image"]);
    assert_eq!(display(&p), r#".spec.containers[name="app"].image"#);
    assert_eq!(
        display(&path(&["f:metadata", "f:finalizers", r#"v:"x""#])),
        r#".metadata.finalizers[="x"]"#
    );
    let port = path(&["f:ports", r#"k:{"containerPort":80,"protocol":"TCP"}"#]);
    assert_eq!(display(&port), r#".ports[containerPort=80,protocol="TCP"]"#);
}
