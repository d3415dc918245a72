use std::path::Path;

fn main() {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    let tool = Path::new(&argv0).file_name().and_then(|n| n.to_str()).unwrap_or("").to_owned();
    let rest: Vec<String> = args.collect();
    let code = match tool.as_str() {
        // Fake tools are added here as they land: "k3d" | "helmfile" | "helm" | "tilt".
        _ => {
            eprintln!("testbed: not implemented yet ({tool} {rest:?})");
            2
        }
    };
    std::process::exit(code);
}
