"""The Responses API: ``/responses`` over the chat pipeline, stored responses in the Store."""
