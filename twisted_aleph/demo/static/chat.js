// The chat page's client: plain JS, no build step.
// Joining opens a WebSocket to /chat and sends the room, then the name (the
// protocol of the seed's chat handler); every message of the room is shown.
// ?room=...&name=... in the URL fills the form and joins at once.
"use strict";
(function () {
  var socket = null;
  var $ = function (id) { return document.getElementById(id); };

  function setStatus(text) { $("status").textContent = text; }

  function show(text) {
    var li = document.createElement("li");
    li.textContent = text;  // text, never HTML
    $("messages").appendChild(li);
    $("messages").scrollTop = $("messages").scrollHeight;
  }

  function join(room, name) {
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/chat");
    setStatus("connecting");
    socket.onopen = function () {
      socket.send(room);
      socket.send(name);
      setStatus("joined " + room + " as " + name);
      document.body.dataset.state = "joined";
      $("join").hidden = true;
      $("send").hidden = false;
      $("message").focus();
    };
    socket.onmessage = function (event) { show(event.data); };
    socket.onclose = function (event) {
      setStatus("disconnected (" + event.code + ")");
      document.body.dataset.state = "closed";
      $("join").hidden = false;
      $("send").hidden = true;
    };
  }

  $("join").addEventListener("submit", function (event) {
    event.preventDefault();
    var room = $("room").value.trim(), name = $("name").value.trim();
    if (room && name) { join(room, name); }
  });

  $("send").addEventListener("submit", function (event) {
    event.preventDefault();
    var text = $("message").value;
    if (text && socket && socket.readyState === WebSocket.OPEN) {
      socket.send(text);
      $("message").value = "";
    }
  });

  var params = new URLSearchParams(location.search);
  if (params.get("room") && params.get("name")) {
    $("room").value = params.get("room");
    $("name").value = params.get("name");
    join(params.get("room"), params.get("name"));
  }
})();
