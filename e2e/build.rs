//! Generates the kubelet device-plugin gRPC code from e2e/proto with protox,
//! a protobuf compiler written in Rust, so building needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=../operator/proto");
    let descriptors = protox::compile(["deviceplugin.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    // KEDA's side of the operator's external scaler, to call it as KEDA does.
    let scaler = protox::compile(["externalscaler.proto"], ["../operator/proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(scaler)?;
    Ok(())
}
