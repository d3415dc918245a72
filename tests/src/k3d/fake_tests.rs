//! Unit tests of the fake k3d (names, labels, node filters, flags).
use super::*;

fn node(role: &'static str, index: Option<u32>) -> NodeSpec {
    NodeSpec { name: String::new(), role, index }
}

#[test]
fn node_filters_follow_k3d() {
    assert!(filter_matches("server:*", &node("server", Some(1))));
    assert!(filter_matches("server:0", &node("server", Some(0))));
    assert!(!filter_matches("server:0", &node("server", Some(1))));
    assert!(filter_matches("agent:0,2", &node("agent", Some(2))));
    assert!(filter_matches("agent:1-", &node("agent", Some(3))));
    assert!(!filter_matches("agent:*", &node("server", Some(0))));
    assert!(filter_matches("all", &node("loadbalancer", None)));
    assert!(filter_matches("loadbalancer", &node("loadbalancer", None)));
    assert!(!filter_matches("server:*", &node("loadbalancer", None)));
}

#[test]
fn runtime_labels_and_names() {
    assert_eq!(
        parse_runtime_label("bootstrap.hash=abc@server:*;agent:*"),
        ("bootstrap.hash".into(), "abc".into(), vec!["server:*".into(), "agent:*".into()])
    );
    assert_eq!(registry_name("ameide", "dev-reg"), "dev-reg");
    assert_eq!(registry_name("ameide", "k3d-dev-reg"), "k3d-dev-reg");
    assert_eq!(registry_name("ameide", ""), "k3d-ameide-registry");
    let names: Vec<String> = node_specs("x", 1, 1).into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["k3d-x-server-0", "k3d-x-agent-0", "k3d-x-serverlb"]);
}

#[test]
fn flags_parse_like_cobra() {
    let args: Vec<String> =
        ["ameide", "--config=k.yaml", "--runtime-label", "a=b@all", "--wait", "--timeout", "60s"]
            .map(String::from)
            .to_vec();
    let f = Flags::parse(&args).unwrap();
    assert_eq!(f.positional, ["ameide"]);
    assert_eq!(f.value(&["config", "c"]), Some("k.yaml"));
    assert_eq!(f.all_values("runtime-label"), ["a=b@all"]);
    assert!(f.switch(&["wait"]));
    assert!(
        Flags::parse(&["--bogus".to_owned()]).unwrap_err().to_string().contains("unknown flag")
    );
}
