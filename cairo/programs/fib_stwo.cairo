// The same Fibonacci claim for Stwo (layout `all_cairo_stwo`): the Stwo Cairo adapter expects
// a proof-mode program that declares all eleven builtins, in this order, and returns every
// builtin pointer, so main takes and returns them all though it only writes the output.
%builtins output pedersen range_check ecdsa bitwise ec_op keccak poseidon range_check96 add_mod mul_mod
func main(
    output_ptr: felt*,
    pedersen_ptr: felt*,
    range_check_ptr: felt,
    ecdsa_ptr: felt*,
    bitwise_ptr: felt*,
    ec_op_ptr: felt*,
    keccak_ptr: felt*,
    poseidon_ptr: felt*,
    range_check96_ptr: felt*,
    add_mod_ptr: felt*,
    mul_mod_ptr: felt*,
) -> (
    output_ptr: felt*,
    pedersen_ptr: felt*,
    range_check_ptr: felt,
    ecdsa_ptr: felt*,
    bitwise_ptr: felt*,
    ec_op_ptr: felt*,
    keccak_ptr: felt*,
    poseidon_ptr: felt*,
    range_check96_ptr: felt*,
    add_mod_ptr: felt*,
    mul_mod_ptr: felt*,
) {
    alloc_locals;
    local n;
    %{ ids.n = program_input['n'] %}
    assert output_ptr[0] = n;
    let res = fib(1, 1, n);
    assert output_ptr[1] = res;
    return (
        output_ptr=&output_ptr[2],
        pedersen_ptr=pedersen_ptr,
        range_check_ptr=range_check_ptr,
        ecdsa_ptr=ecdsa_ptr,
        bitwise_ptr=bitwise_ptr,
        ec_op_ptr=ec_op_ptr,
        keccak_ptr=keccak_ptr,
        poseidon_ptr=poseidon_ptr,
        range_check96_ptr=range_check96_ptr,
        add_mod_ptr=add_mod_ptr,
        mul_mod_ptr=mul_mod_ptr,
    );
}

func fib(first: felt, second: felt, n: felt) -> felt {
    if (n == 0) {
        return second;
    }
    return fib(first=second, second=first + second, n=n - 1);
}
