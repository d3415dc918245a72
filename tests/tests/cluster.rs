//! The cluster runs what real clients write, with no fake tool in between: Helm test
//! hook Pods created with kubectl are run by the kubelet (their check sees the
//! cluster, their log is served), Deployments roll out through ReplicaSets and Pods,
//! StatefulSets get their claims bound before their Pods start.

mod common;

use std::time::Duration;

use common::{Bed, eventually, real_tool, write};
use serde_json::Value;

const WEB: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  \
    replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    \
    spec: {containers: [{name: web, image: \"nginx:1.27\"}]}\n---\napiVersion: v1\nkind: Service\n\
    metadata: {name: web, namespace: default}\nspec: {selector: {app: web}, ports: [{port: 80}]}\n";

/// A Helm test hook Pod (as a chart renders one) whose check fetches `url`.
fn check_pod(name: &str, url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  annotations: {{\"helm.sh/hook\": test}}\n\
         spec:\n  restartPolicy: Never\n  containers:\n  - name: check\n    image: \"busybox:1.37.0\"\n    \
         command: [wget, -q, -O, /dev/null, \"{url}\"]\n"
    )
}

fn phase(bed: &Bed, pod: &str) -> Option<String> {
    let pod = bed.get(&format!("/api/v1/namespaces/default/pods/{pod}"))?;
    pod["status"]["phase"]
        .as_str()
        .filter(|p| *p == "Succeeded" || *p == "Failed")
        .map(str::to_owned)
}

fn terminated(bed: &Bed, pod: &str) -> Value {
    let pod = bed.get(&format!("/api/v1/namespaces/default/pods/{pod}")).unwrap();
    pod["status"]["containerStatuses"][0]["state"]["terminated"].clone()
}

#[test]
fn test_hook_pods_created_with_kubectl_are_run_by_the_kubelet() {
    let Some(bed) = Bed::new() else { return };
    let Some(kubectl) = real_tool("kubectl") else { return };
    bed.set(&["startup-ms=300"]);
    // Before the Service exists, the check cannot resolve its host.
    let early = write(
        bed.dir(),
        "early.yaml",
        &check_pod("early", "http://web.default.svc.cluster.local/"),
    );
    let created: Value = serde_json::from_str(
        &bed.api.ok(&kubectl, &["create", "-f", early.to_str().unwrap(), "-o", "json"]),
    )
    .unwrap();
    assert_eq!(created["status"]["phase"], "Pending", "a new Pod is Pending: {created}");
    let p = eventually(Duration::from_secs(30), "the early check ended", || phase(&bed, "early"));
    assert_eq!(p, "Failed");
    let t = terminated(&bed, "early");
    assert_eq!((t["exitCode"].as_i64(), t["reason"].as_str()), (Some(1), Some("Error")), "{t}");
    let log = bed.api.ok(&kubectl, &["logs", "early"]);
    assert_eq!(log, "wget: bad address 'web.default.svc.cluster.local'\n");

    // Once the Deployment behind the Service is Ready, the same check passes.
    let web = write(bed.dir(), "web.yaml", WEB);
    bed.api.ok(&kubectl, &["apply", "-f", web.to_str().unwrap()]);
    bed.api.ok(&kubectl, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let late =
        write(bed.dir(), "late.yaml", &check_pod("late", "http://web.default.svc.cluster.local/"));
    bed.api.ok(&kubectl, &["create", "-f", late.to_str().unwrap()]);
    let p = eventually(Duration::from_secs(30), "the late check ended", || phase(&bed, "late"));
    assert_eq!(p, "Succeeded", "{}", bed.api.ok(&kubectl, &["logs", "late"]));
    let t = terminated(&bed, "late");
    assert_eq!((t["exitCode"].as_i64(), t["reason"].as_str()), (Some(0), Some("Completed")), "{t}");

    // A Pod that is not a hook runs on: Running and Ready, never Succeeded.
    let pods = bed.list("/api/v1/namespaces/default/pods", Some("app=web"));
    assert_eq!(pods.len(), 2);
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Running"), "{pods:?}");
}

#[test]
fn a_pod_waits_for_its_secret_and_gets_it_as_environment() {
    let Some(bed) = Bed::new() else { return };
    let Some(kubectl) = real_tool("kubectl") else { return };
    bed.set(&["startup-ms=200"]);
    let pod = write(
        bed.dir(),
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: app, namespace: default}\nspec:\n  containers:\n  - name: app\n    \
         image: \"busybox:1.37.0\"\n    envFrom: [{secretRef: {name: creds}}]\n",
    );
    bed.api.ok(&kubectl, &["apply", "-f", pod.to_str().unwrap()]);
    // Without the Secret the kubelet cannot make the container's environment.
    let waiting = eventually(Duration::from_secs(30), "CreateContainerConfigError", || {
        let pod = bed.get("/api/v1/namespaces/default/pods/app")?;
        let w = pod["status"]["containerStatuses"][0]["state"]["waiting"].clone();
        (w["reason"] == "CreateContainerConfigError").then_some(w)
    });
    assert_eq!(waiting["message"], "secret \"creds\" not found");
    let secret = write(
        bed.dir(),
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: default}\nstringData: {password: pw}\n",
    );
    bed.api.ok(&kubectl, &["apply", "-f", secret.to_str().unwrap()]);
    bed.api.ok(&kubectl, &["wait", "--for=condition=Ready", "pod/app", "--timeout=30s"]);
}

fn replicasets(bed: &Bed) -> Vec<Value> {
    bed.list("/apis/apps/v1/namespaces/default/replicasets", Some("app=web"))
}

#[test]
fn deployments_roll_out_through_replicasets() {
    let Some(bed) = Bed::new() else { return };
    let Some(kubectl) = real_tool("kubectl") else { return };
    bed.set(&["startup-ms=300"]);
    let web = write(bed.dir(), "web.yaml", WEB);
    bed.api.ok(&kubectl, &["apply", "-f", web.to_str().unwrap()]);
    bed.api.ok(&kubectl, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let deploy = bed.get("/apis/apps/v1/namespaces/default/deployments/web").unwrap();
    let rs = replicasets(&bed);
    assert_eq!(rs.len(), 1, "{rs:?}");
    let first = &rs[0];
    let hash = first["metadata"]["labels"]["pod-template-hash"].as_str().unwrap().to_owned();
    // What helm's GetNewReplicaSet finds: owned by the Deployment, the template's labels
    // and the selector carrying the hash.
    assert_eq!(first["metadata"]["name"], format!("web-{hash}"));
    assert_eq!(first["metadata"]["ownerReferences"][0]["uid"], deploy["metadata"]["uid"]);
    assert_eq!(first["spec"]["selector"]["matchLabels"]["pod-template-hash"], hash.as_str());
    assert_eq!(first["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], hash.as_str());
    assert_eq!(first["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "1");
    assert_eq!(
        (first["status"]["readyReplicas"].as_i64(), first["status"]["observedGeneration"].as_i64()),
        (Some(2), first["metadata"]["generation"].as_i64())
    );
    let pods =
        bed.list("/api/v1/namespaces/default/pods", Some(&format!("pod-template-hash={hash}")));
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["name"].as_str().unwrap().starts_with(&format!("web-{hash}-")))
    );

    // A new template: a second ReplicaSet; the first is scaled to 0 once it is available.
    bed.api.ok(&kubectl, &["set", "image", "deployment/web", "web=nginx:1.28"]);
    bed.api.ok(&kubectl, &["rollout", "status", "deployment/web", "--timeout=60s"]);
    let rs = eventually(Duration::from_secs(30), "the old ReplicaSet scaled down", || {
        let rs = replicasets(&bed);
        let old = rs.iter().find(|r| r["metadata"]["name"] == format!("web-{hash}"))?;
        (old["spec"]["replicas"] == 0 && old["status"]["replicas"] == 0).then_some(rs)
    });
    assert_eq!(rs.len(), 2);
    let new = rs.iter().find(|r| r["metadata"]["name"] != format!("web-{hash}")).unwrap();
    assert_eq!(new["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
    let pods = bed.list("/api/v1/namespaces/default/pods", Some("app=web"));
    assert_eq!(pods.len(), 2, "{pods:?}");
    assert!(pods.iter().all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28"));

    // Scaling down removes Pods; deleting the Deployment takes its ReplicaSets and Pods.
    bed.api.ok(&kubectl, &["patch", "deployment/web", "-p", "{\"spec\":{\"replicas\":1}}"]);
    eventually(Duration::from_secs(30), "one Pod left", || {
        (bed.list("/api/v1/namespaces/default/pods", Some("app=web")).len() == 1).then_some(())
    });
    bed.api.ok(&kubectl, &["delete", "deployment", "web"]);
    eventually(Duration::from_secs(30), "ReplicaSets and Pods collected", || {
        let pods = bed.list("/api/v1/namespaces/default/pods", Some("app=web"));
        (replicasets(&bed).is_empty() && pods.is_empty()).then_some(())
    });
}

#[test]
fn statefulset_pods_start_in_order_once_their_claims_are_bound() {
    let Some(bed) = Bed::new() else { return };
    let Some(kubectl) = real_tool("kubectl") else { return };
    bed.set(&["startup-ms=800"]);
    let db = write(
        bed.dir(),
        "db.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\nspec:\n  replicas: 2\n  \
         serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    \
         spec: {containers: [{name: db, image: \"postgres:16.4-alpine\", volumeMounts: [{name: data, mountPath: /data}]}]}\n  \
         volumeClaimTemplates:\n  - metadata: {name: data}\n    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n\
         ---\napiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: unused, namespace: default}\n\
         spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}\n",
    );
    bed.api.ok(&kubectl, &["apply", "-f", db.to_str().unwrap()]);
    // OrderedReady: db-1 is created only once db-0 is Ready (db-1 is read first, so a
    // db-1 seen implies db-0 was Ready before that read).
    let pod = |n: u32| bed.get(&format!("/api/v1/namespaces/default/pods/db-{n}"));
    let ready = |p: &Option<Value>| {
        p.as_ref().is_some_and(|p| {
            p["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    };
    eventually(Duration::from_secs(60), "both replicas Ready", || {
        let (second, first) = (pod(1), pod(0));
        assert!(second.is_none() || ready(&first), "db-1 exists while db-0 is not Ready");
        (ready(&first) && ready(&second)).then_some(())
    });
    bed.api.ok(&kubectl, &["rollout", "status", "statefulset/db", "--timeout=60s"]);
    for ordinal in 0..2 {
        let claim = bed
            .get(&format!("/api/v1/namespaces/default/persistentvolumeclaims/data-db-{ordinal}"))
            .unwrap();
        assert_eq!(claim["status"]["phase"], "Bound", "{claim}");
        assert_eq!(claim["spec"]["storageClassName"], "local-path");
        let pod = pod(ordinal).unwrap();
        let volume = &pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"];
        assert_eq!(volume, &format!("data-db-{ordinal}"));
    }
    // local-path binds when a Pod uses a claim (WaitForFirstConsumer): no Pod, no volume.
    let unused = bed.get("/api/v1/namespaces/default/persistentvolumeclaims/unused").unwrap();
    assert_eq!(unused["status"]["phase"], "Pending");
}
