//! Every expression libpcap refuses (`data/reject.tsv`, from libpcap's test
//! suite) is refused here too, with an error that names a position inside
//! the expression.

use std::path::Path;

#[test]
fn libpcap_rejections_are_rejected_with_a_position() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/reject.tsv");
    let text = std::fs::read_to_string(path).unwrap();
    let mut problems = Vec::new();
    let mut count = 0;
    for line in text.lines().skip(1) {
        let columns: Vec<&str> = line.split('\t').collect();
        let (expression, libpcap_error) = (columns[0], columns[3]);
        count += 1;
        match filters::compile(expression) {
            Ok(program) => problems.push(format!(
                "{expression:?} compiled (libpcap: {libpcap_error}):\n{program}"
            )),
            Err(error) if error.position() >= expression.len() => problems.push(format!(
                "{expression:?}: position {} is outside the expression: {error}",
                error.position()
            )),
            Err(error) => println!("{expression:<45} {error}"),
        }
    }
    println!("{count} expressions refused");
    assert!(count > 200, "reject.tsv looks truncated");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
