"""End-to-end tests of a running `openledger node --dev` through web3.py, an Ethereum client
library that this project did not write.

No Solidity compiler is available offline, so the test contract is hand-assembled EVM bytecode
(see `RUNTIME_ASM` below). Its Solidity equivalent would be:

    contract Store {
        uint256 value;                                   // slot 0
        event ValueSet(address indexed who, uint256 value);
        function set(uint256 v) external { value = v; emit ValueSet(msg.sender, v); }
        function get() external view returns (uint256) { return value; }
        function fail() external pure { revert("Store: fail() always reverts"); }
        // any other call data: revert with no data
    }
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
import rlp
from eth_abi import encode as abi_encode
from hexbytes import HexBytes
from web3 import AsyncWeb3, Web3
from web3.exceptions import ContractLogicError
from web3.providers.persistent import WebSocketProvider

from conftest import CHAIN_ID, DEV_ADDR_0

# The other dev accounts that `eth_accounts` lists (indices 1..3 of the standard mnemonic).
DEV_ADDR_1 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"

RECEIPT_TIMEOUT_S = 30
ONE_OPEN = 10**18


# ---------------------------------------------------------------------------------------------
# The hand-assembled contract
# ---------------------------------------------------------------------------------------------

def selector(signature: str) -> bytes:
    """The 4-byte function selector, computed with web3's keccak."""
    return bytes(Web3.keccak(text=signature)[:4])


SET_SELECTOR = selector("set(uint256)")  # 0x60fe47b1
GET_SELECTOR = selector("get()")  # 0x6d4ce63c
FAIL_SELECTOR = selector("fail()")  # 0xa9cc4718
VALUE_SET_TOPIC = bytes(Web3.keccak(text="ValueSet(address,uint256)"))
REVERT_REASON = "Store: fail() always reverts"  # fits in one 32-byte word
ERROR_SELECTOR = selector("Error(string)")  # 0x08c379a0

assert SET_SELECTOR.hex() == "60fe47b1" and GET_SELECTOR.hex() == "6d4ce63c"
assert ERROR_SELECTOR.hex() == "08c379a0"
assert len(REVERT_REASON.encode()) <= 32

OPCODES = {
    "STOP": 0x00, "EQ": 0x14, "SHR": 0x1C, "CALLER": 0x33, "CALLDATALOAD": 0x35,
    "CODECOPY": 0x39, "MSTORE": 0x52, "SLOAD": 0x54, "SSTORE": 0x55, "JUMPI": 0x57,
    "JUMPDEST": 0x5B, "DUP1": 0x80, "LOG2": 0xA2, "RETURN": 0xF3, "REVERT": 0xFD,
}


def assemble(program: list) -> bytes:
    """A two-pass assembler for the listings below.

    Items are an opcode name ("SSTORE"), a push `("PUSHn", int | bytes | "@label")` (a label
    pushes the label's byte offset), or `("LABEL", name)`, which emits a JUMPDEST there.
    """
    def size(item) -> int:
        if isinstance(item, str):
            return 1
        op, _ = item
        return 1 if op == "LABEL" else 1 + int(op[4:])

    labels, pc = {}, 0
    for item in program:
        if isinstance(item, tuple) and item[0] == "LABEL":
            labels[item[1]] = pc
        pc += size(item)

    out = bytearray()
    for item in program:
        if isinstance(item, str):
            out.append(OPCODES[item])
            continue
        op, arg = item
        if op == "LABEL":
            out.append(OPCODES["JUMPDEST"])
            continue
        width = int(op[4:])
        assert 1 <= width <= 32, op
        if isinstance(arg, str):
            arg = labels[arg[1:]]
        if isinstance(arg, int):
            arg = arg.to_bytes(width, "big")
        assert len(arg) == width, (op, arg)
        out.append(0x5F + width)  # PUSH1 is 0x60 ... PUSH32 is 0x7f
        out += arg
    return bytes(out)


# Error(string) revert data laid out in memory by `fail()`:
#   [0x00..0x04) selector 0x08c379a0 | [0x04..0x24) offset 0x20 | [0x24..0x44) length
#   [0x44..0x64) the reason, left-aligned and zero-padded          => 0x64 (100) bytes
REASON_WORD = REVERT_REASON.encode().ljust(32, b"\0")
EXPECTED_REVERT_DATA = ERROR_SELECTOR + abi_encode(["string"], [REVERT_REASON])
assert len(EXPECTED_REVERT_DATA) == 0x64

RUNTIME_ASM = [
    # --- dispatch on the first 4 bytes of call data ------------------- stack (top first)
    ("PUSH1", 0x00), "CALLDATALOAD",          # word0 = calldata[0..32]
    ("PUSH1", 0xE0), "SHR",                   # sel = word0 >> 224
    "DUP1", ("PUSH4", SET_SELECTOR), "EQ",    # sel == set ? | sel
    ("PUSH2", "@set"), "JUMPI",               # -> set         sel
    "DUP1", ("PUSH4", GET_SELECTOR), "EQ",
    ("PUSH2", "@get"), "JUMPI",               # -> get         sel
    "DUP1", ("PUSH4", FAIL_SELECTOR), "EQ",
    ("PUSH2", "@fail"), "JUMPI",              # -> fail        sel
    ("PUSH1", 0x00), "DUP1", "REVERT",        # unknown selector: revert(0, 0)

    # --- set(uint256 v): value = v; emit ValueSet(msg.sender, v) -------
    ("LABEL", "set"),
    ("PUSH1", 0x04), "CALLDATALOAD",          # v                     (calldata[4..36])
    "DUP1", ("PUSH1", 0x00), "SSTORE",        # sstore(0, v)           v
    ("PUSH1", 0x00), "MSTORE",                # mem[0..32] = v  (the event's data)
    "CALLER",                                 # topic1 = msg.sender (indexed `who`)
    ("PUSH32", VALUE_SET_TOPIC),              # topic0 = keccak("ValueSet(address,uint256)")
    ("PUSH1", 0x20), ("PUSH1", 0x00),         # size 32, offset 0
    "LOG2",                                   # log2(0, 32, topic0, msg.sender)
    "STOP",

    # --- get() returns (uint256) ----------------------------------------
    ("LABEL", "get"),
    ("PUSH1", 0x00), "SLOAD",                 # value
    ("PUSH1", 0x00), "MSTORE",                # mem[0..32] = value
    ("PUSH1", 0x20), ("PUSH1", 0x00), "RETURN",  # return(0, 32)

    # --- fail(): revert Error(REVERT_REASON) ------------------------------
    ("LABEL", "fail"),
    ("PUSH32", ERROR_SELECTOR.ljust(32, b"\0")), ("PUSH1", 0x00), "MSTORE",  # mem[0..4]=selector
    ("PUSH1", 0x20), ("PUSH1", 0x04), "MSTORE",                  # string offset 0x20
    ("PUSH1", len(REVERT_REASON)), ("PUSH1", 0x24), "MSTORE",    # string length
    ("PUSH32", REASON_WORD), ("PUSH1", 0x44), "MSTORE",          # string bytes
    ("PUSH1", 0x64), ("PUSH1", 0x00), "REVERT",                  # revert(0, 100)
]
RUNTIME = assemble(RUNTIME_ASM)

# Init code: copy the runtime that follows these 13 bytes to memory and return it.
#   PUSH2 len  DUP1  PUSH2 13  PUSH1 0  CODECOPY   -> codecopy(dest 0, offset 13, size len)
#   PUSH1 0  RETURN                                 -> return(0, len)
INIT_ASM = [
    ("PUSH2", len(RUNTIME)), "DUP1", ("PUSH2", 13), ("PUSH1", 0x00), "CODECOPY",
    ("PUSH1", 0x00), "RETURN",
]
INIT_CODE = assemble(INIT_ASM)
assert len(INIT_CODE) == 13
DEPLOY_CODE = INIT_CODE + RUNTIME

# The ABI, written by hand.
ABI = [
    {"type": "function", "name": "set", "stateMutability": "nonpayable",
     "inputs": [{"name": "v", "type": "uint256"}], "outputs": []},
    {"type": "function", "name": "get", "stateMutability": "view",
     "inputs": [], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "fail", "stateMutability": "pure",
     "inputs": [], "outputs": []},
    {"type": "event", "name": "ValueSet", "anonymous": False,
     "inputs": [{"name": "who", "type": "address", "indexed": True},
                {"name": "value", "type": "uint256", "indexed": False}]},
]


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def create_address(sender: str, nonce: int) -> str:
    """The CREATE address: keccak(rlp([sender, nonce]))[12:]."""
    digest = Web3.keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))
    return Web3.to_checksum_address(digest[12:])


def padded_topic(address: str) -> str:
    return "0x" + "00" * 12 + address[2:].lower()


def send_signed(w3: Web3, account, tx: dict) -> tuple[str, dict]:
    """Completes `tx` (nonce, chain id, gas, EIP-1559 fees), signs it locally with `account`,
    sends it with eth_sendRawTransaction, and waits for its receipt."""
    tx = dict(tx)
    tx.setdefault("from", account.address)
    tx.setdefault("value", 0)
    tx.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    tx.setdefault("chainId", CHAIN_ID)
    if "gas" not in tx:
        tx["gas"] = w3.eth.estimate_gas(tx)
    if "maxFeePerGas" not in tx:
        tip = w3.eth.max_priority_fee
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        tx["maxPriorityFeePerGas"] = tip
        tx["maxFeePerGas"] = 2 * base + tip
    del tx["from"]
    signed = w3.eth.account.sign_transaction(tx, account.key)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    assert tx_hash == signed.hash
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
    return tx_hash, receipt


def deploy_signed(w3: Web3, account):
    nonce = w3.eth.get_transaction_count(account.address, "pending")
    tx_hash, receipt = send_signed(w3, account, {"data": DEPLOY_CODE, "nonce": nonce})
    return nonce, tx_hash, receipt


@pytest.fixture()
def contract(w3, dev_account):
    """A fresh Store contract deployed by dev account 0."""
    _, _, receipt = deploy_signed(w3, dev_account)
    assert receipt["status"] == 1
    return w3.eth.contract(address=receipt["contractAddress"], abi=ABI)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

def test_node_identity(w3):
    assert w3.eth.chain_id == CHAIN_ID
    accounts = w3.eth.accounts
    assert len(accounts) == 10
    assert accounts[0] == DEV_ADDR_0 and accounts[1] == DEV_ADDR_1
    assert w3.eth.get_balance(accounts[9]) == 10_000 * ONE_OPEN


def test_deploy_with_locally_signed_raw_transaction(w3, dev_account):
    nonce, tx_hash, receipt = deploy_signed(w3, dev_account)

    assert receipt["status"] == 1
    assert receipt["transactionHash"] == tx_hash
    assert receipt["from"] == dev_account.address
    assert receipt["to"] is None
    assert receipt["contractAddress"] == create_address(dev_account.address, nonce)
    assert receipt["gasUsed"] > 53_000  # 21000 + 32000 creation + code deposit
    assert w3.eth.get_code(receipt["contractAddress"]) == HexBytes(RUNTIME)

    tx = w3.eth.get_transaction(tx_hash)
    assert tx["type"] == 2
    assert tx["blockNumber"] == receipt["blockNumber"]
    assert tx["input"] == HexBytes(DEPLOY_CODE)
    assert w3.eth.get_transaction_count(dev_account.address) == nonce + 1


def test_deploy_with_eth_send_transaction(w3):
    sender = w3.eth.accounts[1]
    nonce = w3.eth.get_transaction_count(sender)
    factory = w3.eth.contract(abi=ABI, bytecode=DEPLOY_CODE)
    tx_hash = factory.constructor().transact({"from": sender})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)

    assert receipt["status"] == 1
    assert receipt["from"] == sender
    assert receipt["contractAddress"] == create_address(sender, nonce)
    assert w3.eth.get_code(receipt["contractAddress"]) == HexBytes(RUNTIME)
    deployed = w3.eth.contract(address=receipt["contractAddress"], abi=ABI)
    assert deployed.functions.get().call() == 0


def test_call_and_transact(w3, dev_account, contract):
    assert contract.functions.get().call() == 0
    # The same call with hand-made call data through w3.eth.call.
    raw = w3.eth.call({"to": contract.address, "data": GET_SELECTOR})
    assert raw == HexBytes(abi_encode(["uint256"], [0]))

    tx = contract.functions.set(42).build_transaction({
        "from": dev_account.address,
        "nonce": w3.eth.get_transaction_count(dev_account.address, "pending"),
    })
    assert tx["data"] == "0x" + SET_SELECTOR.hex() + abi_encode(["uint256"], [42]).hex()
    tx_hash, receipt = send_signed(w3, dev_account, tx)

    assert receipt["status"] == 1
    assert receipt["to"] == contract.address
    assert receipt["contractAddress"] is None
    assert receipt["gasUsed"] > 21_000
    assert receipt["cumulativeGasUsed"] >= receipt["gasUsed"]

    events = contract.events.ValueSet().process_receipt(receipt)
    assert len(events) == 1
    ev = events[0]
    assert ev["event"] == "ValueSet"
    assert ev["address"] == contract.address
    assert ev["args"]["who"] == dev_account.address
    assert ev["args"]["value"] == 42
    assert ev["transactionHash"] == tx_hash
    assert ev["blockNumber"] == receipt["blockNumber"]
    assert ev["blockHash"] == receipt["blockHash"]
    assert ev["logIndex"] == 0

    raw_log = receipt["logs"][0]
    assert raw_log["topics"] == [HexBytes(VALUE_SET_TOPIC), HexBytes(padded_topic(dev_account.address))]
    assert raw_log["data"] == HexBytes(abi_encode(["uint256"], [42]))

    assert contract.functions.get().call() == 42
    assert w3.eth.get_storage_at(contract.address, 0) == HexBytes(abi_encode(["uint256"], [42]))
    # The state before the transaction is still readable at the previous block.
    assert contract.functions.get().call(block_identifier=receipt["blockNumber"] - 1) == 0


def test_get_logs_filters(w3, dev_account, contract):
    other = w3.eth.accounts[1]
    receipts = []
    mine = []  # (value, receipt) of the sets by dev account 0
    for value in (7, 8, 9):
        tx = contract.functions.set(value).build_transaction({
            "from": dev_account.address,
            "nonce": w3.eth.get_transaction_count(dev_account.address, "pending"),
        })
        _, receipt = send_signed(w3, dev_account, tx)
        assert receipt["status"] == 1
        receipts.append(receipt)
        mine.append((value, receipt))
        if value == 8:  # one set from another account in between, via eth_sendTransaction
            tx_hash = contract.functions.set(1000).transact({"from": other})
            r = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
            assert r["status"] == 1
            receipts.append(r)
    first, last = receipts[0]["blockNumber"], receipts[-1]["blockNumber"]
    topic0 = "0x" + VALUE_SET_TOPIC.hex()

    logs = w3.eth.get_logs({
        "fromBlock": first, "toBlock": last, "address": contract.address,
        "topics": [topic0, padded_topic(dev_account.address)],
    })
    assert [int.from_bytes(l["data"], "big") for l in logs] == [7, 8, 9]
    assert [l["transactionHash"] for l in logs] == [r["transactionHash"] for _, r in mine]
    assert [l["blockNumber"] for l in logs] == [r["blockNumber"] for _, r in mine]
    for l in logs:
        assert l["address"] == contract.address
        assert l["topics"] == [HexBytes(topic0), HexBytes(padded_topic(dev_account.address))]
        assert l["removed"] is False

    # Topic 0 alone: all four sets, in chain order.
    all_logs = w3.eth.get_logs({"fromBlock": first, "toBlock": last,
                                "address": contract.address, "topics": [topic0]})
    assert [int.from_bytes(l["data"], "big") for l in all_logs] == [7, 8, 1000, 9]
    # A wildcard first position and the other sender.
    theirs = w3.eth.get_logs({"fromBlock": first, "toBlock": last,
                              "topics": [None, padded_topic(other)]})
    assert [int.from_bytes(l["data"], "big") for l in theirs] == [1000]
    # The event's own log filter through the contract object decodes the same logs.
    decoded = contract.events.ValueSet().get_logs(
        from_block=first, to_block=last, argument_filters={"who": dev_account.address})
    assert [e["args"]["value"] for e in decoded] == [7, 8, 9]

    # Topics that match nothing.
    nobody = padded_topic(Web3.to_checksum_address("0x" + secrets.token_hex(20)))
    assert w3.eth.get_logs({"fromBlock": first, "toBlock": last, "address": contract.address,
                            "topics": [topic0, nobody]}) == []
    unknown_event = "0x" + Web3.keccak(text="NoSuchEvent()").hex().removeprefix("0x")
    assert w3.eth.get_logs({"fromBlock": first, "toBlock": last,
                            "topics": [unknown_event]}) == []
    # A range before the contract existed.
    assert w3.eth.get_logs({"fromBlock": 0, "toBlock": first - 1,
                            "address": contract.address}) == []


def test_reverting_call_raises_contract_logic_error(w3, contract):
    with pytest.raises(ContractLogicError) as info:
        contract.functions.fail().call()
    assert REVERT_REASON in str(info.value)
    assert info.value.message == f"execution reverted: {REVERT_REASON}"
    assert HexBytes(info.value.data) == HexBytes(EXPECTED_REVERT_DATA)

    # Plain w3.eth.call with hand-made call data.
    with pytest.raises(ContractLogicError) as info:
        w3.eth.call({"to": contract.address, "data": FAIL_SELECTOR})
    assert REVERT_REASON in str(info.value)

    # Estimating gas for it fails the same way.
    with pytest.raises(ContractLogicError) as info:
        w3.eth.estimate_gas({"to": contract.address, "data": FAIL_SELECTOR})
    assert REVERT_REASON in str(info.value)

    # An unknown selector reverts with no data.
    with pytest.raises(ContractLogicError) as info:
        w3.eth.call({"to": contract.address, "data": "0xdeadbeef"})
    assert "execution reverted" in str(info.value)


def test_reverting_transaction_is_mined_with_status_0(w3, dev_account, contract):
    tx_hash, receipt = send_signed(
        w3, dev_account, {"to": contract.address, "data": FAIL_SELECTOR, "gas": 100_000})
    assert receipt["status"] == 0
    assert receipt["logs"] == []
    assert 21_000 < receipt["gasUsed"] < 100_000
    assert contract.functions.get().call() == 0


def test_eip1559_transfer_with_web3_defaults(w3, signing_w3, dev_account):
    recipient = Web3.to_checksum_address("0x" + secrets.token_hex(20))
    value = ONE_OPEN * 3 // 2

    # web3 fills nonce, gas (eth_estimateGas), maxPriorityFeePerGas (eth_maxPriorityFeePerGas)
    # and maxFeePerGas (from the latest block's base fee), signs locally, and sends raw.
    tx_hash = signing_w3.eth.send_transaction(
        {"from": dev_account.address, "to": recipient, "value": value})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
    assert receipt["status"] == 1
    assert receipt["gasUsed"] == 21_000

    tx = w3.eth.get_transaction(tx_hash)
    assert tx["type"] == 2
    assert tx["from"] == dev_account.address and tx["to"] == recipient and tx["value"] == value
    assert tx["maxPriorityFeePerGas"] == w3.eth.max_priority_fee
    assert tx["maxFeePerGas"] >= tx["maxPriorityFeePerGas"]
    block = w3.eth.get_block(receipt["blockNumber"])
    base_fee = block["baseFeePerGas"]
    assert receipt["effectiveGasPrice"] == min(
        tx["maxFeePerGas"], base_fee + tx["maxPriorityFeePerGas"])
    assert receipt["effectiveGasPrice"] > 0

    n = receipt["blockNumber"]
    sender_before = w3.eth.get_balance(dev_account.address, n - 1)
    sender_after = w3.eth.get_balance(dev_account.address, n)
    assert sender_before - sender_after == value + receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(recipient, n - 1) == 0
    assert w3.eth.get_balance(recipient, n) == value
    assert w3.eth.get_balance(recipient) == value


def test_websocket_new_heads_subscription(node, w3):
    sender, receiver = w3.eth.accounts[2], w3.eth.accounts[3]

    async def scenario():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as aw3:
            assert await aw3.eth.chain_id == CHAIN_ID
            sub_id = await aw3.eth.subscribe("newHeads")
            # Sent over the same WebSocket: a value transfer from a dev account.
            tx_hash = await aw3.eth.send_transaction(
                {"from": sender, "to": receiver, "value": 12345})

            async def first_message():
                async for message in aw3.socket.process_subscriptions():
                    return message

            message = await asyncio.wait_for(first_message(), timeout=20)
            receipt = await aw3.eth.wait_for_transaction_receipt(tx_hash, timeout=20)
            unsubscribed = await aw3.eth.unsubscribe(sub_id)
            return sub_id, message, receipt, unsubscribed

    sub_id, message, receipt, unsubscribed = asyncio.run(scenario())
    assert message["subscription"] == sub_id
    header = message["result"]
    assert header["number"] == receipt["blockNumber"]
    assert header["hash"] == receipt["blockHash"]
    assert header["parentHash"] == w3.eth.get_block(receipt["blockNumber"] - 1)["hash"]
    assert receipt["status"] == 1
    assert unsubscribed is True


def test_fee_history(w3, dev_account):
    # Three blocks (block time 0: one per transaction), each with one transaction that paid a
    # known tip (maxFeePerGas = 2 * baseFee + tip leaves room for all of it).
    tip = w3.eth.max_priority_fee
    for _ in range(3):
        _, receipt = send_signed(w3, dev_account, {"to": w3.eth.accounts[4], "value": 1})
    n = receipt["blockNumber"]
    history = w3.eth.fee_history(3, n, [50.0])
    assert history["oldestBlock"] == n - 2
    assert len(history["baseFeePerGas"]) == 4  # three blocks and the next one
    assert len(history["gasUsedRatio"]) == 3
    assert len(history["reward"]) == 3 and all(len(r) == 1 for r in history["reward"])
    assert history["baseFeePerGas"][2] == w3.eth.get_block(n)["baseFeePerGas"]
    assert history["reward"][2] == [tip]  # the only transaction of block n paid `tip`
    assert 0 < history["gasUsedRatio"][2] <= 1


def test_websocket_logs_subscription_filters_by_address_and_topic(node, w3, dev_account, contract):
    other = w3.eth.accounts[5]

    async def scenario():
        async with AsyncWeb3(WebSocketProvider(node.ws_url)) as aw3:
            sub_id = await aw3.eth.subscribe(
                "logs",
                {"address": contract.address,
                 "topics": [VALUE_SET_TOPIC.hex(), padded_topic(dev_account.address)]})
            # One event from another sender (filtered out), then ours.
            await aw3.eth.send_transaction(
                {"from": other, "to": contract.address,
                 "data": SET_SELECTOR + (5).to_bytes(32, "big")})
            send_signed(w3, dev_account, {"to": contract.address,
                                          "data": SET_SELECTOR + (77).to_bytes(32, "big")})

            async def first_message():
                async for message in aw3.socket.process_subscriptions():
                    return message

            message = await asyncio.wait_for(first_message(), timeout=20)
            await aw3.eth.unsubscribe(sub_id)
            return sub_id, message

    sub_id, message = asyncio.run(scenario())
    assert message["subscription"] == sub_id
    log = message["result"]
    assert log["address"] == contract.address
    assert int.from_bytes(bytes(log["data"]), "big") == 77
    assert bytes(log["topics"][1]) == bytes.fromhex(padded_topic(dev_account.address)[2:])
