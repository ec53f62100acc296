//! edgeload: open-loop, coordinated-omission-correct load generation with WebSocket and notebook scenarios. Not built yet (issue 3).
