// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// A contract made by `Diff.deploy2`: stores what it was given.
contract Child {
    uint256 public x;

    constructor(uint256 v) payable {
        x = v;
    }
}

/// The differential test's target: storage writes and clears (refunds), reverts with a custom
/// error, loops, value forwarding and CREATE2, each a path whose gas must match Ethereum's.
contract Diff {
    mapping(uint256 => uint256) public slots;

    event Wrote(uint256 indexed slot, uint256 value);

    error TooBig(uint256 value);

    function write(uint256 slot, uint256 value) external {
        if (value > 1e30) revert TooBig(value);
        slots[slot] = value;
        emit Wrote(slot, value);
    }

    function clear(uint256 slot) external {
        delete slots[slot];
    }

    function spin(uint256 n) external returns (bytes32 h) {
        for (uint256 i; i < n; ++i) h = keccak256(abi.encode(h, i));
        slots[n] = uint256(h);
    }

    function forward(address payable to) external payable {
        (bool ok, ) = to.call{value: msg.value}("");
        require(ok, "forward failed");
    }

    function deploy2(bytes32 salt, uint256 v) external payable returns (address c) {
        c = address(new Child{salt: salt, value: msg.value}(v));
    }

    receive() external payable {}
}
